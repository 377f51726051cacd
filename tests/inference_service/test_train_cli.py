"""The trainer's command line (``make model``, ``make model ARGS="--from-topics --until T"``), in-process:
the flags the Makefile, the fault rig and the local stack pass still land in their settings, and bad
values exit non-zero naming the flag and the value before anything is trained or read."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest

import inference_service.training.__main__ as entry
from fraud_core.cli import parse_settings
from inference_service.training import from_topics
from inference_service.training.settings import TrainCli


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("training started instead of refusing")


def test_the_make_model_command_line_with_args_appended_takes_the_last_value() -> None:
    # Makefile: --seed 7 --model-dir models $(ARGS); ARGS may repeat a flag.
    argv = ["--seed", "7", "--model-dir", "models", "--seed", "8", "--events", "1000", "--users", "50"]
    argv += ["--stress-seed", "3", "--stress-events", "400", "--stress-warmup-events", "0", "--no-promote"]
    argv += ["--review-cost-eur", "2.5", "--false-block-cost-eur", "40"]
    s = parse_settings(TrainCli, argv)
    assert (8, 1000, 50, Path("models")) == (s.TRAIN_SEED, s.TRAIN_EVENTS, s.TRAIN_USERS, s.MODEL_DIR)
    assert (s.TRAIN_STRESS_SEED, s.TRAIN_STRESS_EVENTS, s.TRAIN_STRESS_WARMUP_EVENTS) == (3, 400, 0)
    assert s.TRAIN_NO_PROMOTE and not s.TRAIN_FROM_TOPICS
    assert (s.config.seed, s.config.cost.review_cost_eur, s.config.cost.false_block_cost_eur) == (
        8,
        2.5,
        40.0,
    )


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TrainCli.model_fields:
        monkeypatch.delenv(name, raising=False)
    s = parse_settings(TrainCli, [])
    assert (7, 320_000, 2000, Path("models")) == (s.TRAIN_SEED, s.TRAIN_EVENTS, s.TRAIN_USERS, s.MODEL_DIR)
    assert (s.TRAIN_STRESS_SEED, s.TRAIN_STRESS_EVENTS, s.TRAIN_STRESS_WARMUP_EVENTS) == (
        None,
        80_000,
        80_000,
    )
    assert (s.config.cost.review_cost_eur, s.config.cost.false_block_cost_eur) == (5.0, 100.0)
    assert not s.TRAIN_NO_PROMOTE and not s.TRAIN_FROM_TOPICS and s.TRAIN_UNTIL is None
    assert (s.TRAIN_TOPIC, s.TRAIN_LABELS_TOPIC, s.LABEL_DELAY_MS) == (
        "payments.initiated",
        "payments.labels",
        7 * 86_400_000,
    )


def test_from_topics_flags_parse() -> None:
    argv = ["--from-topics", "--until", "2026-02-01T00:00:00Z", "--topic", "t.in", "--labels-topic", "t.lab"]
    s = parse_settings(TrainCli, [*argv, "--label-delay-ms", "86400000", "--model-dir", "m"])
    assert s.TRAIN_FROM_TOPICS and s.TRAIN_UNTIL == "2026-02-01T00:00:00Z"
    assert (
        "t.in",
        "t.lab",
        86_400_000,
        Path("m"),
    ) == (s.TRAIN_TOPIC, s.TRAIN_LABELS_TOPIC, s.LABEL_DELAY_MS, s.MODEL_DIR)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "0"], "--events must be >= 1, got 0"),
        (["--users", "-3"], "--users must be >= 1, got -3"),
        (["--review-cost-eur", "-1"], "--review-cost-eur must be >= 0, got -1"),
        (["--false-block-cost-eur", "-0.5"], "--false-block-cost-eur must be >= 0, got -0.5"),
        (["--stress-warmup-events", "-1"], "--stress-warmup-events must be >= 0, got -1"),
        (["--label-delay-ms", "-1", "--from-topics"], "--label-delay-ms must be >= 0, got -1"),
        (["--seed", "seven"], "--seed"),
        (["--topic", "", "--from-topics"], "--topic must not be empty"),
    ],
)
def test_invalid_values_exit_2_naming_the_flag_and_value(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(entry, "_from_simulator", _started)
    monkeypatch.setattr(from_topics, "run", _started)
    with pytest.raises(SystemExit) as exited:
        entry.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if args[0] == "--seed":
        assert "seven" in err


def test_an_unknown_flag_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(entry, "_from_simulator", _started)
    with pytest.raises(SystemExit) as exited:
        entry.main(["--evnets", "10"])
    assert exited.value.code == 2 and "--evnets" in capsys.readouterr().err


def test_until_not_a_time_exits_3_naming_it_before_kafka_is_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_ENV", "local")
    monkeypatch.setattr(from_topics, "train_from_topics", _started)
    code = entry.main(["--from-topics", "--until", "next tuesday"])
    assert code == 3
    assert "--until 'next tuesday' is not an ISO-8601 time" in capsys.readouterr().err


def test_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        entry.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--seed", "--events", "--users", "--model-dir", "--review-cost-eur", "--false-block-cost-eur",
                 "--stress-seed", "--stress-events", "--stress-warmup-events", "--no-promote", "--from-topics",
                 "--until", "--topic", "--labels-topic", "--label-delay-ms"):  # fmt: skip
        assert f"{flag} " in out or f"{flag}\n" in out, flag
    assert "Seed of the held-out stress set" in out and "Write the version but leave LIVE alone" in out
