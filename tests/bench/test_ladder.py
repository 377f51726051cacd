"""The benchmark's arithmetic (bench/ladder.py), against figures worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from bench.ladder import (
    combine_trials,
    find_ceiling,
    rule_for,
    schedule_ms,
    trial_figures,
)


def fake_trial(
    achieved: float, p99: float, lost: int = 0, dup: int = 0, offered: float = 1000
) -> dict[str, Any]:
    return {
        "offered_eps": offered,
        "achieved_eps": achieved,
        "events": 100,
        "lost": lost,
        "duplicates": dup,
        "latency_ms": {"p50": p99 / 4, "p95": p99 / 2, "p99": p99, "max": p99 * 2},
        "send_lag_ms": {"p99": 1.0, "max": 2.0},
    }


# ---- the schedule and latency from it ----------------------------------------------------------


def test_schedule_is_open_loop_from_the_start_time() -> None:
    assert schedule_ms(10_000, 4, 250.0) == [10_000, 10_004, 10_008, 10_012]


def test_schedule_refuses_a_rate_of_zero_naming_it() -> None:
    with pytest.raises(ValueError, match="rate must be > 0 events/s, got 0"):
        schedule_ms(0, 3, 0)


def test_latency_counts_from_the_scheduled_time_so_a_late_generator_shows() -> None:
    # Three events due at 0, 10, 20 ms; the generator fell behind and sent them at 0, 60, 120 ms;
    # each was decided 5 ms after it was sent.
    scheduled = {"a": 0, "b": 10, "c": 20}
    sent = {"a": 0, "b": 60, "c": 120}
    received = {"a": 5, "b": 65, "c": 125}
    fig = trial_figures(100.0, scheduled, sent, received, duplicates=0)
    # from the schedule: 5, 55 and 105 ms, not 5 ms each
    assert fig["latency_ms"]["max"] == 105.0
    assert fig["latency_ms"]["p50"] == 55.0
    # sent 0, 50 and 100 ms late: p99 interpolates 50 + 0.98 * 50
    assert fig["send_lag_ms"] == {"p99": 99.0, "max": 100.0}
    # 3 decisions between the first scheduled send (0) and the last decision (125), minus the
    # smallest latency (5): 3 / 0.120 s = 25 events/s
    assert fig["achieved_eps"] == 25.0
    assert fig["lost"] == 0


def test_trial_counts_events_never_decided_as_lost() -> None:
    fig = trial_figures(100.0, {"a": 0, "b": 10}, {"a": 0, "b": 10}, {"a": 7}, duplicates=2)
    assert (fig["events"], fig["lost"], fig["duplicates"]) == (2, 1, 2)


def test_trial_with_nothing_decided_has_no_latency() -> None:
    fig = trial_figures(100.0, {"a": 0}, {"a": 0}, {}, duplicates=0)
    assert fig["achieved_eps"] == 0.0
    assert fig["latency_ms"] == {"p50": None, "p95": None, "p99": None, "max": None}


def test_p99_interpolates_between_ranks() -> None:
    # latencies 0..100 ms: the 99th percentile of 101 values is the value of rank 99
    scheduled = {str(i): 0 for i in range(101)}
    received = {str(i): i for i in range(101)}
    fig = trial_figures(1000.0, scheduled, scheduled, received, duplicates=0)
    assert fig["latency_ms"]["p99"] == 99.0
    assert fig["latency_ms"]["p95"] == 95.0


# ---- median and spread ---------------------------------------------------------------------------


def test_step_is_the_median_of_its_trials_with_the_spread() -> None:
    step = combine_trials([fake_trial(990, 40), fake_trial(700, 900, lost=3), fake_trial(1000, 30, dup=1)])
    assert step["achieved_eps"] == 990
    assert step["latency_ms"]["p99"] == 40
    assert step["spread"]["achieved_eps"] == {"min": 700, "max": 1000}
    assert step["spread"]["latency_p99_ms"] == {"min": 30, "max": 900}
    assert (step["events"], step["lost"], step["duplicates"], step["trials"]) == (300, 3, 1, 3)
    assert len(step["trial_runs"]) == 3


def test_median_of_two_trials_is_their_mean() -> None:
    step = combine_trials([fake_trial(900, 40), fake_trial(1000, 60)])
    assert (step["achieved_eps"], step["latency_ms"]["p99"]) == (950, 50)


def test_trials_of_different_loads_are_refused() -> None:
    with pytest.raises(ValueError, match=r"share offered_eps, got \[500, 1000\]"):
        combine_trials([fake_trial(500, 10, offered=500), fake_trial(1000, 10)])


# ---- the sustained rules -------------------------------------------------------------------------


def test_at_least_once_rule() -> None:
    rule = rule_for("at-least-once", 5000)
    assert rule.p99_limit_ms == 500
    assert rule.holds(combine_trials([fake_trial(950, 500)]))
    assert not rule.holds(combine_trials([fake_trial(949, 100)]))  # achieved < 95 %
    assert not rule.holds(combine_trials([fake_trial(1000, 501)]))  # p99 over 500 ms
    assert not rule.holds(combine_trials([fake_trial(1000, 50), fake_trial(1000, 50, lost=1)]))
    assert rule.holds(combine_trials([fake_trial(1000, 50, dup=4)]))  # duplicates allowed


def test_exactly_once_rule_allows_a_checkpoint_of_latency_but_no_duplicate() -> None:
    rule = rule_for("exactly-once", 1000)
    assert rule.p99_limit_ms == 1500
    assert rule.holds(combine_trials([fake_trial(1000, 1500)]))
    assert not rule.holds(combine_trials([fake_trial(1000, 1501)]))
    assert not rule.holds(combine_trials([fake_trial(1000, 800), fake_trial(1000, 800, dup=1)]))
    assert "p99 <= 1500 ms" in rule.describe() and "duplicated" in rule.describe()


def test_rule_for_an_unknown_delivery_names_it() -> None:
    with pytest.raises(ValueError, match="delivery 'twice'"):
        rule_for("twice", 1000)


# ---- the ladder and the bisection ---------------------------------------------------------------


def fake_system(capacity: float) -> tuple[list[float], Any]:
    """A system that sustains every load up to ``capacity``; records the loads it was given."""
    asked: list[float] = []

    def try_load(load: float) -> bool:
        asked.append(load)
        return load <= capacity

    return asked, try_load


def test_ladder_then_bisection_to_within_ten_percent() -> None:
    asked, fake_try = fake_system(1300)
    ceiling = find_ceiling([250, 1000, 2000, 3000], fake_try, tolerance=0.10, max_bisect_steps=10)
    # ladder: 250 ok, 1000 ok, 2000 fails; then 1500 fails, 1250 ok, 1375 fails
    # (1375 - 1250 = 125 <= 10 % of 1375)
    assert asked == [250, 1000, 2000, 1500, 1250, 1375]
    assert (ceiling.max_sustained, ceiling.first_failed, ceiling.bisect_steps) == (1250, 1375, 3)
    assert ceiling.bounded


def test_bisection_stops_at_the_cap() -> None:
    asked, fake_try = fake_system(1300)
    ceiling = find_ceiling([250, 1000, 2000], fake_try, tolerance=0.10, max_bisect_steps=2)
    assert asked == [250, 1000, 2000, 1500, 1250]
    assert (ceiling.max_sustained, ceiling.first_failed) == (1250, 1500)


def test_no_bisection_when_the_ladder_steps_are_already_close() -> None:
    asked, fake_try = fake_system(1000)
    ceiling = find_ceiling([1000, 1050], fake_try, tolerance=0.10)
    assert asked == [1000, 1050]
    assert (ceiling.max_sustained, ceiling.first_failed, ceiling.bisect_steps) == (1000, 1050, 0)


def test_a_first_load_that_fails_bisects_down_from_zero() -> None:
    asked, fake_try = fake_system(90)
    ceiling = find_ceiling([250, 500], fake_try, tolerance=0.10, max_bisect_steps=3)
    assert asked == [250, 125, 62, 94]
    assert (ceiling.max_sustained, ceiling.first_failed) == (62, 94)


def test_every_load_sustained_is_unbounded() -> None:
    asked, fake_try = fake_system(10_000)
    ceiling = find_ceiling([100, 200], fake_try)
    assert asked == [100, 200]
    assert (ceiling.max_sustained, ceiling.first_failed, ceiling.bounded) == (200, None, False)


def test_loads_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ascending list, got \[500, 100\]"):
        find_ceiling([500, 100], lambda _load: True)
