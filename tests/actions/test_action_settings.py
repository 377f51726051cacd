"""Unit tests of the consumer settings and the CLI's settings handling (no services)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from actions.__main__ import build_parser, build_settings
from actions.notify import LogNotifier, WebhookNotifier, notifier_for
from actions.settings import ConsumerSettings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_contract() -> None:
    s = ConsumerSettings()
    assert (s.FLAGGED_TOPIC, s.APPROVED_TOPIC, s.ACTIONS_TOPIC, s.DLQ_TOPIC) == (
        "payments.flagged",
        "payments.approved",
        "payments.actions",
        "payments.dlq",
    )
    assert (s.GROUP_ID, s.ACTIONS_METRICS_PORT, s.BLOCK_TTL_S) == ("fraud-actions", 9102, 7 * 24 * 3600)


def test_empty_webhook_means_log_notifier_and_bad_one_is_refused() -> None:
    assert ConsumerSettings(NOTIFY_WEBHOOK_URL="").NOTIFY_WEBHOOK_URL is None
    assert isinstance(notifier_for(None), LogNotifier)
    assert isinstance(notifier_for("http://localhost:1/hook"), WebhookNotifier)
    with pytest.raises(pydantic.ValidationError, match="NOTIFY_WEBHOOK_URL"):
        ConsumerSettings(NOTIFY_WEBHOOK_URL="ftp://nope")


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUP_ID", "from-env")
    monkeypatch.setenv("BLOCK_TTL_S", "60")
    args = build_parser().parse_args(["--block-ttl-s", "120", "--audit-profile-updates", "false"])
    s = build_settings(args)
    assert (s.GROUP_ID, s.BLOCK_TTL_S, s.AUDIT_PROFILE_UPDATES) == ("from-env", 120, False)


def test_help_names_every_environment_variable() -> None:
    text = " ".join(build_parser().format_help().split())
    for name in ("FLAGGED_TOPIC", "APPROVED_TOPIC", "ACTIONS_TOPIC", "DLQ_TOPIC", "GROUP_ID"):
        assert f"env {name}" in text
    assert "ACTIONS_METRICS_PORT" in text and "NOTIFY_WEBHOOK_URL" in text and "IDEMPOTENCY_TTL_S" in text


def test_cli_rejects_an_invalid_setting_with_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "actions", "--notify-webhook-url", "ftp://nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "NOTIFY_WEBHOOK_URL" in proc.stderr
