"""The fault suite's pure parts, without processes: the row and its ``holds``, the recovery measure,
the proof that a service went down, the merge of a partial run, and the choice of the TaskManager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faults.rig import (
    FaultNotObserved,
    Row,
    markdown,
    merged_with_previous,
    observed_down,
    row_holds,
    tally,
    time_to_healthy,
)
from faults.scenarios import lag_cleared, taskmanager_to_kill


def _decision(event_id: str, degraded: bool = False) -> dict[str, object]:
    return {"event_id": event_id, "degraded": degraded}


@pytest.mark.parametrize(
    ("delivery", "lost", "duplicates", "observed", "after", "extra", "holds"),
    [
        ("exactly-once", 0, 0, "kafka (pid 1) gone", 10, True, True),
        ("exactly-once", 0, 1, "kafka (pid 1) gone", 10, True, False),
        ("at-least-once", 0, 3, "kafka (pid 1) gone", 10, True, True),
        ("at-least-once", 1, 0, "kafka (pid 1) gone", 10, True, False),
        ("at-least-once", 0, 0, "", 10, True, False),  # the fault was never seen
        ("at-least-once", 0, 0, "kafka (pid 1) gone", 0, True, False),  # nothing flowed after the repair
        ("at-least-once", 0, 0, "kafka (pid 1) gone", 10, False, False),  # the scenario's own check
    ],
)
def test_holds_needs_the_fault_observed_and_traffic_after_the_repair(
    delivery: str, lost: int, duplicates: int, observed: str, after: int, extra: bool, holds: bool
) -> None:
    assert row_holds(delivery, lost, duplicates, observed, after, extra) is holds


def test_tally_counts_events_sent_after_the_repair_that_came_out() -> None:
    sent_at = {"a": 1.0, "b": 2.0, "c": 5.0, "d": 6.0, "e": 7.0}
    decisions = [_decision("a"), _decision("b", degraded=True), _decision("c"), _decision("c")]
    row = tally("broker-kill", "exactly-once", sent_at, decisions, {"d"}, 1.5, 5.0, "kafka gone")
    # e has neither a decision nor a dead letter; c and d (sent at 5 and 6) came out after the repair.
    assert (row.events_in, row.decisions_out, row.lost, row.duplicates) == (5, 4, 1, 1)
    assert (row.dead_letters, row.degraded, row.events_after_repair) == (1, 1, 2)
    assert row.fault_observed == "kafka gone"
    assert row.holds is False
    assert row.ran_at  # each row carries its own time


def test_a_feed_that_died_with_the_fault_fails_the_row() -> None:
    sent_at = {"a": 1.0, "b": 2.0}
    row = tally(
        "redis-down", "at-least-once", sent_at, [_decision("a"), _decision("b")], set(), None, 3.0, "x"
    )
    assert row.lost == 0 and row.events_after_repair == 0
    assert row.holds is False


def test_recovery_waits_until_decisions_are_no_longer_degraded() -> None:
    # (arrival, sent, degraded); the repair at 10.
    items = [
        (9.0, 8.0, True),  # sent before the repair: not counted
        (11.0, 10.0, True),
        (12.0, 10.5, False),  # a healthy one between degraded ones is not yet recovery
        (13.0, 11.0, True),
        (14.5, 12.0, False),
        (15.0, 12.5, False),
    ]
    assert time_to_healthy(10.0, items) == 4.5
    assert time_to_healthy(10.0, [(11.0, 10.0, False)]) == 1.0
    assert time_to_healthy(10.0, [(11.0, 10.0, True)]) is None  # never healthy again
    assert time_to_healthy(10.0, [(9.0, 8.0, False)]) is None  # nothing sent after the repair


def test_a_service_that_was_not_running_is_not_a_fault() -> None:
    with pytest.raises(FaultNotObserved, match="'not running'"):
        observed_down("kafka", "not running", None, 9092, False)
    with pytest.raises(FaultNotObserved, match="still runs as pid 7"):
        observed_down("kafka", "stopped (pid 6)", 7, 9092, False)
    with pytest.raises(FaultNotObserved, match="port 9092 still accepts"):
        observed_down("kafka", "stopped (pid 6)", None, 9092, True)
    assert (
        observed_down("redis", "stopped (pid 6)", None, 6379, False) == "redis (pid 6) gone, port 6379 closed"
    )


def _row(scenario: str, ran_at: str, holds: bool = True) -> Row:
    return Row(
        scenario, "at-least-once", 10, 10, 0, 0, 0, 0, 1.0, holds, ran_at=ran_at, fault_observed="seen"
    )


def test_a_partial_run_keeps_earlier_rows_under_their_own_time_and_drops_undated_ones(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    kept = _row("redis-down", "2026-12-01T10:00:00+00:00").to_json()
    rerun = _row("broker-kill", "2026-12-01T10:05:00+00:00", holds=False).to_json()
    undated = {
        k: v for k, v in _row("scoring-500", "x").to_json().items() if k not in ("ran_at", "fault_observed")
    }
    path.write_text(
        json.dumps({"started_at": "2026-12-01T09:59:00+00:00", "scenarios": [kept, rerun, undated]})
    )
    fresh = _row("broker-kill", "2026-12-03T08:00:00+00:00")

    merged = merged_with_previous([fresh], path)

    assert [(r.scenario, r.ran_at, r.holds) for r in merged] == [
        ("redis-down", "2026-12-01T10:00:00+00:00", True),
        ("broker-kill", "2026-12-03T08:00:00+00:00", True),
    ]
    table = markdown(merged, "2026-12-03T07:59:00+00:00")
    assert "| redis-down | at-least-once | 2026-12-01T10:00:00+00:00 |" in table
    assert "| broker-kill | at-least-once | 2026-12-03T08:00:00+00:00 |" in table


def test_the_taskmanager_running_the_subtasks_is_the_one_killed() -> None:
    ids: dict[int, str | None] = {1: "tm-1-aaaaaa", 2: "tm-2-bbbbbb"}
    # Both subtasks on the second TaskManager, as on the fresh clone of 2026-12-03.
    assert taskmanager_to_kill({"tm-2-bbbbbb": 4}, ids) == 2
    assert taskmanager_to_kill({"tm-1-aaaaaa": 3, "tm-2-bbbbbb": 1}, ids) == 1
    with pytest.raises(FaultNotObserved, match="runs the job's subtasks"):
        taskmanager_to_kill({"tm-9-gone": 2}, ids)


def test_the_consumers_lag_is_cleared_when_every_partition_passed_its_backlog() -> None:
    target = {("flagged", 0): 10, ("flagged", 1): 0, ("approved", 0): 25}
    assert lag_cleared(target, {("flagged", 0): 10, ("approved", 0): 30})  # the empty partition needs nothing
    assert not lag_cleared(target, {("flagged", 0): 9, ("approved", 0): 30})
    assert not lag_cleared(target, {("flagged", 0): 10})  # nothing committed yet on approved
