"""Fail closed (issue 24 §4): no deployable has a default APP_ENV, so one started without it refuses
to start, saying what to set, instead of running with the development secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
from pydantic import ValidationError

from actions.__main__ import main as actions_main
from console.__main__ import main as console_main
from console.settings import ConsoleSettings
from fraud_core.settings import ConnectionSettings
from inference_service.__main__ import main as inference_main
from monitoring.__main__ import main as monitoring_main
from producers.produce import main as produce_main


def test_settings_without_app_env_are_refused_naming_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_ENV", raising=False)
    for settings in (ConnectionSettings, ConsoleSettings):
        with pytest.raises(ValidationError, match=r"APP_ENV is not set: set APP_ENV=production"):
            settings()
    assert ConnectionSettings(APP_ENV="local").APP_ENV == "local"
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ValidationError, match="CONSOLE_SECRET_KEY"):  # no development secret either
        ConsoleSettings()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The scoring service's entry point replaces the root logger's handlers (JSON to stderr):
    put them back for the tests after this one."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("started without APP_ENV")


def _exit_code(main: Callable[[], int | None]) -> int | str | None:
    try:
        return main()
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    ("module", "main"),
    [
        ("console", lambda: console_main([])),
        ("actions", lambda: actions_main([])),
        ("inference_service", inference_main),
        ("monitoring", lambda: monitoring_main([])),
        ("producers.produce", lambda: produce_main([])),
    ],
)
@pytest.mark.usefixtures("root_logging")
def test_a_process_started_without_app_env_refuses_to_start(
    module: str,
    main: Callable[[], int | None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each deployable's entry point (what ``python -m <module>`` runs), called in-process."""
    monkeypatch.delenv("APP_ENV", raising=False)
    # Should one start after all, it fails here instead of serving or producing until the timeout.
    for target in (
        "uvicorn.run",
        "actions.__main__.run_service",
        "monitoring.__main__.run_service",
        "producers.produce._events",
    ):
        monkeypatch.setattr(target, _started)
    assert _exit_code(main) == 2, module
    stderr = capsys.readouterr().err
    assert "APP_ENV is not set" in stderr and "APP_ENV=local" in stderr, stderr[-2000:]
