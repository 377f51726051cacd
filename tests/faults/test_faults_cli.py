"""``make faults``' command line, in-process: the flags faults/README.md documents pick the planned
(scenario, delivery) pairs, and a bad value exits 2 naming the flag and the value before any stack
is started."""

from __future__ import annotations

from typing import NoReturn

import pytest

import faults.__main__ as faults_main
from faults.__main__ import FaultsCli
from fraud_core.cli import parse_settings


def _started(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the fault suite started a stack instead of refusing")


def test_repeated_scenarios_and_a_delivery_pick_those_rows_in_suite_order() -> None:
    argv = ["--scenario", "schema-change", "--scenario", "broker-kill", "--delivery", "at-least-once"]
    settings = parse_settings(FaultsCli, [*argv, "--rate", "50", "--outage-s", "3", "--after-s", "0"])
    assert settings.plan() == [("broker-kill", "at-least-once"), ("schema-change", "at-least-once")]
    assert (settings.FAULTS_RATE, settings.FAULTS_OUTAGE_S, settings.FAULTS_AFTER_S) == (50.0, 3.0, 0.0)


def test_no_flag_plans_every_scenario_in_each_of_its_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FaultsCli.model_fields:
        monkeypatch.delenv(name, raising=False)
    plan = parse_settings(FaultsCli, []).plan()
    assert ("broker-kill", "exactly-once") in plan and ("broker-kill", "at-least-once") in plan
    assert ("schema-change", "exactly-once") not in plan  # at-least-once only
    assert {name for name, _ in plan} == set(faults_main.SCENARIOS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "broker-kil"], "--scenario: unknown scenario 'broker-kil'"),
        (["--delivery", "exactly-twice"], "exactly-twice"),
        (["--rate", "0"], "--rate must be > 0, got 0"),
        (["--outage-s", "-1"], "--outage-s must be > 0, got -1"),
        (["--after-s", "-2"], "--after-s must be >= 0, got -2"),
    ],
)
def test_a_bad_value_exits_2_naming_it_before_a_stack_starts(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(faults_main, "Stack", _started)
    with pytest.raises(SystemExit) as exited:
        faults_main.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and args[0].lstrip("-").split("-")[0] in err


def test_help_lists_every_option_and_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        faults_main.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--scenario", "--delivery", "--after-s", "--rate", "--outage-s"):
        assert flag in out
    assert "taskmanager-kill" in out and "How long each fault lasts" in out
