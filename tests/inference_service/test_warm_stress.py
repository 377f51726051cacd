"""The stress set scored after a warm-up: windows of days and late-label rates start full."""

from __future__ import annotations

import numpy as np
import pytest

from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.simulator import SimConfig, Simulator
from inference_service.exceptions import TrainingError
from inference_service.training.train import replay_with_transactions, warm_replay

DAY_MS = 86_400_000
RATES = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if "_fraud_rate_" in n]


def _sim() -> Simulator:
    # Many compromised merchants so that their labels (days late) exist in a few weeks of stream.
    return Simulator(SimConfig(seed=11, n_users=100, rate_eps=0.008, compromised_merchant_rate=0.002))


def test_the_warm_rows_are_the_cold_replays_tail_feature_for_feature() -> None:
    sim = _sim()
    events = list(sim.events(count=4_000))
    cold, cold_txns = replay_with_transactions(iter(events), sim.profiles())
    warm, warm_txns = warm_replay(iter(events), sim.profiles(), 1_500)
    assert [t.event_id for t in warm_txns] == [t.event_id for t in cold_txns[1_500:]]
    np.testing.assert_array_equal(warm.x, cold.x[1_500:])
    np.testing.assert_array_equal(warm.y, cold.y[1_500:])


def test_label_rates_are_known_from_the_first_scored_day_only_after_a_warm_up() -> None:
    sim = _sim()
    events = list(sim.events(count=12_000))
    span_days = (events[-1].txn.event_time - events[0].txn.event_time) / DAY_MS
    assert span_days > 14, span_days  # long enough for the 7-day label delay to pass
    warmup = 7_000
    warm, _ = warm_replay(iter(events), sim.profiles(), warmup)
    cold, _ = replay_with_transactions(iter(events[warmup:]), sim.profiles())
    first_day = warm.event_time < warm.event_time[0] + DAY_MS
    assert first_day.sum() > 50
    # From a cold start nothing is labelled yet; after the warm-up, earlier frauds' labels count.
    assert cold.x[first_day][:, RATES].max() == 0.0
    assert warm.x[first_day][:, RATES].max() > 0.0


@pytest.mark.parametrize("warmup", [-1, 500])
def test_a_warm_up_that_leaves_nothing_or_is_negative_is_refused(warmup: int) -> None:
    sim = _sim()
    with pytest.raises(TrainingError, match="warm-up"):
        warm_replay(sim.events(count=300 if warmup > 0 else 10), sim.profiles(), warmup)
