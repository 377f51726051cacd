"""Fail closed (issue 24 §4): no deployable has a default APP_ENV, so one started without it refuses
to start, saying what to set, instead of running with the development secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from console.settings import ConsoleSettings
from fraud_core.settings import ConnectionSettings

ROOT = Path(__file__).resolve().parents[2]


def test_settings_without_app_env_are_refused_naming_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_ENV", raising=False)
    for settings in (ConnectionSettings, ConsoleSettings):
        with pytest.raises(ValidationError, match=r"APP_ENV is not set: set APP_ENV=production"):
            settings()
    assert ConnectionSettings(APP_ENV="local").APP_ENV == "local"
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ValidationError, match="CONSOLE_SECRET_KEY"):  # no development secret either
        ConsoleSettings()


@pytest.mark.parametrize(
    "module", ["console", "actions", "inference_service", "monitoring", "producers.produce"]
)
def test_a_process_started_without_app_env_refuses_to_start(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "APP_ENV"}
    done = subprocess.run(
        [sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "APP_ENV is not set" in done.stderr and "APP_ENV=local" in done.stderr
