"""CLIs generated from settings: flags and their short forms, env fallback, booleans, errors that
name the flag or variable, and child-process environments validated in the parent."""

from __future__ import annotations

import pydantic_settings
import pytest
from pydantic_settings import CLI_SUPPRESS

from actions.__main__ import ActionsCli
from backtest.cli import BacktestCli
from console.__main__ import ConsoleCli
from flink_jobs.scoring_job import JobCli
from flink_jobs.settings import JobSettings
from fraud_core.cli import _is_secret, child_env, help_text, parse_settings
from fraud_core.exceptions import ConfigError
from monitoring.__main__ import MonitorCli
from producers.produce import ProduceCli


def test_short_and_long_flags_set_the_field_and_the_environment_fills_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRODUCER_SEED", "11")
    monkeypatch.setenv("PRODUCER_RATE", "5")
    s = parse_settings(
        ProduceCli, ["--rate", "0", "--PRODUCER-COUNT", "3", "--labels-topic", "", "--no-kafka"]
    )
    assert (s.PRODUCER_RATE, s.PRODUCER_COUNT, s.PRODUCER_SEED) == (0.0, 3, 11)
    assert s.labels_topic is None and s.no_kafka and not s.seed_profiles


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--PRODUCER-RATE", "-5"], {}, "--PRODUCER-RATE must be >= 0, got -5"),
        ([], {"PRODUCER_RATE": "-5"}, "PRODUCER_RATE must be >= 0, got -5"),
        (["--count", "5", "--duration", "2"], {}, "set --count or --duration, not both"),
    ],
)
def test_an_invalid_setting_exits_2_naming_the_flag_or_the_variable(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(ProduceCli, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_booleans_take_true_or_false_and_refuse_anything_else(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_settings(ActionsCli, ["--audit-profile-updates", "false"]).AUDIT_PROFILE_UPDATES is False
    with pytest.raises(SystemExit):
        parse_settings(ActionsCli, ["--audit-profile-updates", "maybe"])
    assert "--audit-profile-updates input should be a valid boolean" in capsys.readouterr().err


def test_a_secret_is_refused_on_the_command_line_and_kept_out_of_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(JobCli, ["--SCORING-API-KEY", "s3cret-value"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "SCORING_API_KEY in the environment" in err and "s3cret-value" not in err
    assert "API-KEY" not in help_text(JobCli)


def test_help_comes_from_the_fields() -> None:
    text = " ".join(help_text(ProduceCli).split())
    for flag in ("--rate", "--count", "--seed", "--PRODUCER-LINGER-MS", "--avro-file", "--no-kafka"):
        assert flag in text
    assert "Simulator seed: same seed, same stream. (default: 7)" in text


def test_a_child_environment_is_validated_in_the_parent() -> None:
    env = child_env(
        JobSettings, METRICS_PORT=0, STOP_AT="latest", PYTHON_PROFILE=True, CHECKPOINT_INTERVAL_MS=None
    )
    assert env == {"METRICS_PORT": "0", "STOP_AT": "latest", "PYTHON_PROFILE": "true"}
    with pytest.raises(ConfigError, match="has no setting GRUOP_ID"):
        child_env(JobSettings, GRUOP_ID="g")
    with pytest.raises(ConfigError, match="SCORING_BATCH_MAX must be <= 1000, got 5000"):
        child_env(JobSettings, SCORING_BATCH_MAX=5000)


EVERY_CLI = [ActionsCli, BacktestCli, ConsoleCli, JobCli, MonitorCli, ProduceCli]


@pytest.mark.parametrize("cli", EVERY_CLI, ids=lambda c: c.__name__)
def test_every_cli_explains_each_of_its_flags_and_refuses_every_secret_as_one(
    cli: type[pydantic_settings.BaseSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    options = help_text(cli).split("\noptions:", 1)[1]
    for name, info in cli.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if CLI_SUPPRESS in (info.description, *info.metadata):  # CliSuppress: not a flag at all
            assert flag not in options, name
            continue
        assert flag in options, name
        assert info.description, f"{cli.__name__}.{name} has no description for --help"
        if _is_secret(info.annotation):
            with pytest.raises(SystemExit) as exit_info:
                parse_settings(cli, [flag, "s3cret-value"])
            assert exit_info.value.code == 2
            assert "s3cret-value" not in capsys.readouterr().err
