"""The velocity state stays bounded whatever the event times: an event near the job's future bound
(23 h ahead) must not stop the pruning of the user's history, and no input grows it without end."""

from __future__ import annotations

from typing import Any

import pytest

from fraud_core import features as features_module
from fraud_core.features import ALLOWED_LATENESS_MS, HORIZON_MS, VelocityState
from fraud_core.transaction import Transaction
from tests.records import NOW, payment

HOUR_MS = 3_600_000


def txn(event_time: int, **overrides: Any) -> Transaction:
    return Transaction(**payment(event_time=event_time, card_id="card_1", **overrides))


def test_an_event_23_hours_ahead_does_not_stop_pruning() -> None:
    velocity = VelocityState()
    velocity.observe(txn(NOW))
    velocity.observe(txn(NOW + 23 * HOUR_MS))  # inside the job's bound of one day ahead
    step_ms = 15_000
    n = 3 * HOUR_MS // step_ms  # three hours of a payment every 15 seconds after it
    sizes = []
    for i in range(1, n + 1):
        features = velocity.observe(txn(NOW + i * step_ms))
        sizes.append(len(velocity.entries))
    window = (HORIZON_MS + ALLOWED_LATENESS_MS) // step_ms
    # The history holds the last hour and five minutes of payments, plus the one from the future.
    assert max(sizes) <= window + 2
    assert len(velocity.entries) <= window + 2
    # And the features still count the right payments.
    assert features["txn_count_1h"] == HORIZON_MS // step_ms


def test_the_event_ahead_expires_once_time_passes_it() -> None:
    velocity = VelocityState()
    ahead = NOW + 23 * HOUR_MS
    velocity.observe(txn(NOW))
    velocity.observe(txn(ahead))
    velocity.observe(txn(ahead + HORIZON_MS + ALLOWED_LATENESS_MS + 1))
    velocity.observe(txn(ahead + 2 * (HORIZON_MS + ALLOWED_LATENESS_MS)))
    assert NOW not in [e[0] for e in velocity.entries]
    assert ahead not in [e[0] for e in velocity.entries]
    assert len(velocity.entries) == 2


def test_no_input_grows_a_history_beyond_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many events within the horizon, or many from the future, still leave a bounded state (the
    cap lowered to 100 here, to keep the test fast)."""
    monkeypatch.setattr(features_module, "MAX_HISTORY_ENTRIES", 100)
    velocity = VelocityState()
    sizes = []
    for i in range(300):
        velocity.observe(txn(NOW + (i % 2) * 23 * HOUR_MS + i))
        sizes.append(len(velocity.entries))
    assert max(sizes) == 100
