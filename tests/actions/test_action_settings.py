"""Unit tests of the consumer settings and the CLI's settings handling (no services)."""

from __future__ import annotations

import pydantic
import pytest

from actions.__main__ import ActionsCli
from actions.notify import LogNotifier, WebhookNotifier, notifier_for
from actions.settings import ConsumerSettings
from fraud_core.cli import help_text, parse_settings


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
    s = parse_settings(ActionsCli, ["--block-ttl-s", "120", "--audit-profile-updates", "false"])
    assert (s.GROUP_ID, s.BLOCK_TTL_S, s.AUDIT_PROFILE_UPDATES) == ("from-env", 120, False)


def test_help_has_a_flag_for_every_setting_with_its_short_form() -> None:
    text = " ".join(help_text(ActionsCli).split())
    for name in ConsumerSettings.model_fields:
        assert f"--{name.replace('_', '-')}" in text, name
    for short in ("--flagged-topic", "--group-id", "--metrics-port", "--notify-webhook-url", "--batch-max"):
        assert short in text
    assert "Kafka consumer group. (default: fraud-actions)" in text


def test_cli_rejects_an_invalid_setting_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(ActionsCli, ["--notify-webhook-url", "ftp://nope"])
    assert exit_info.value.code == 2
    assert "--notify-webhook-url: NOTIFY_WEBHOOK_URL must be an http(s) URL" in capsys.readouterr().err
