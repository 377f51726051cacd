"""Unit tests of the business cost, the threshold-free metrics, card precision@k and the Parquet
export, against hand-computed cases (and sklearn as an independent oracle of the two curves)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from backtest import evaluate, export
from fraud_core.cost import CostModel
from fraud_core.exceptions import ConfigError

DAY = 86_400_000
T0 = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)


def test_cost_prices_each_outcome() -> None:
    cost = CostModel()  # 5 per review, 100 per false block, a missed fraud at least 50
    fraud = [True, True, True, True, False, False, False]
    amount = [10.0, 200.0, 999.0, 999.0, 30.0, 30.0, 30.0]
    action = ["APPROVE", "APPROVE", "REVIEW", "BLOCK", "APPROVE", "REVIEW", "BLOCK"]
    assert cost.cost(fraud, amount, action).tolist() == [50.0, 200.0, 5.0, 0.0, 0.0, 5.0, 100.0]
    assert cost.breakdown(fraud, amount, action) == {
        "missed_fraud_eur": 250.0,
        "review_eur": 10.0,
        "false_block_eur": 100.0,
        "total_eur": 360.0,
    }
    assert CostModel(1.0, 2.0, 0.0).cost([True, False], [3.0, 3.0], ["APPROVE", "BLOCK"]).tolist() == [
        3.0,
        2.0,
    ]


def test_cost_refuses_unknown_actions_and_bad_prices() -> None:
    with pytest.raises(ConfigError, match="action 'FLAGGED' is not one of"):
        CostModel().cost([True], [1.0], ["FLAGGED"])
    with pytest.raises(ConfigError, match="differ in shape"):
        CostModel().cost([True, False], [1.0], ["APPROVE"])
    with pytest.raises(ConfigError, match="review_cost_eur=-1"):
        CostModel(review_cost_eur=-1)
    with pytest.raises(ConfigError, match="false_block_cost_eur=nan"):
        CostModel(false_block_cost_eur=float("nan"))


def _d(event_id: str, score: float, action: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "score": score,
        "threshold": 0.5,
        "block_threshold": 0.8,
        "decision": "APPROVED" if action == "APPROVE" else "FLAGGED",
        "action": action,
        "reasons": [],
        "rules_fired": [],
        "amount_minor": 10_000,
        "currency": "EUR",
        **extra,
    }


def test_action_at_other_thresholds_keeps_what_rules_asked_and_the_block_threshold() -> None:
    decisions = [
        _d("model-block", 0.9, "BLOCK"),  # the model blocked: still BLOCK with a review threshold of 0.95
        _d("rule-review", 0.1, "REVIEW", rules_fired=["r"]),  # a REVIEW rule: REVIEW whatever the threshold
        _d("rule-block", 0.6, "BLOCK", rules_fired=["b"]),  # stronger than the model's REVIEW: a BLOCK rule
        _d("model-review", 0.6, "REVIEW"),
        _d("approve", 0.2, "APPROVE"),
    ]
    j = evaluate.join(decisions, {d["event_id"]: {"is_fraud": False} for d in decisions})
    assert evaluate.action_at(j, 0.5).tolist() == j.action.tolist() == [2, 1, 2, 1, 0]
    assert evaluate.action_at(j, 0.95).tolist() == [2, 1, 2, 0, 0]
    assert evaluate.action_at(j, 0.15).tolist() == [2, 1, 2, 1, 1]


def test_roc_auc_and_average_precision_by_hand() -> None:
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.4, 0.1]
    # Pairs (fraud, legit) ordered right: (0.9, 0.8), (0.9, 0.1), (0.4, 0.1); wrong: (0.4, 0.8).
    assert evaluate.roc_auc(y, s) == pytest.approx(3 / 4)
    # Thresholds 0.9: precision 1 for half the recall; 0.4: precision 2/3 for the other half.
    assert evaluate.average_precision(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert evaluate.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    # Tied scores enter together: {0.5, 0.5} holds one fraud of two (precision 1/2, recall 1/2).
    assert evaluate.average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert evaluate.roc_auc([0, 0], [0.1, 0.2]) is None
    assert evaluate.average_precision([1, 1], [0.1, 0.2]) is None


def test_roc_auc_and_average_precision_agree_with_sklearn_on_tied_random_scores() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        y = rng.random(300) < 0.1
        y[0], y[1] = True, False
        s = np.round(rng.random(300) + y * 0.3, 1)  # rounded: many ties
        assert evaluate.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert evaluate.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def _events(rows: list[tuple[int, str, float, bool]]) -> tuple[list[str], list[int], list[float], list[bool]]:
    cards = [r[1] for r in rows]
    times = [T0 + r[0] for r in rows]
    return cards, times, [r[2] for r in rows], [r[3] for r in rows]


def test_card_precision_at_k_per_utc_day() -> None:
    rows = [
        # 2026-12-01: the top 2 cards are A (fraud) and B (max 0.8, no fraud): 1/2.
        (0, "A", 0.9, True),
        (1000, "B", 0.8, False),
        (2000, "B", 0.3, False),
        (3000, "C", 0.7, True),
        (DAY - 1, "D", 0.1, True),  # the last millisecond of the day
        # 2026-12-02: A had no fraud today (yesterday's does not count), E did: 1/2.
        (DAY, "A", 0.9, False),
        (DAY + 5, "E", 0.5, True),
        # 2026-12-03: one card, no fraud: fewer than k cards, all reviewed, 0.
        (2 * DAY, "F", 0.6, False),
        # 2026-12-04: one card with a fraud: 1.
        (3 * DAY, "G", 0.4, True),
        # 2026-12-05: L's max (0.95) is a legitimate payment but L had a fraud that day: 2/2.
        (4 * DAY, "L", 0.2, True),
        (4 * DAY + 1, "L", 0.95, False),
        (4 * DAY + 2, "M", 0.5, True),
        (4 * DAY + 3, "N", 0.1, False),
    ]
    got = evaluate.card_precision_at_k(*_events(rows), k=2)
    days = {
        d: (v["cards"], v["reviewed"], v["fraud_cards"], v["precision"]) for d, v in got["per_day"].items()
    }
    assert days == {
        "2026-12-01": (4, 2, 3, 0.5),  # A, C and D had a fraud; A and B reviewed
        "2026-12-02": (2, 2, 1, 0.5),
        "2026-12-03": (1, 1, 0, 0.0),
        "2026-12-04": (1, 1, 1, 1.0),
        "2026-12-05": (3, 2, 2, 1.0),
    }
    assert got["k"] == 2 and got["mean"] == pytest.approx((0.5 + 0.5 + 0.0 + 1.0 + 1.0) / 5)


def test_card_precision_at_k_shares_the_last_slots_among_tied_cards() -> None:
    # K is above; H, I, J tie for the one slot left and one of the three had a fraud: 1/3 of a hit.
    rows = [(0, "K", 0.9, False), (1, "H", 0.7, True), (2, "I", 0.7, False), (3, "J", 0.7, False)]
    got = evaluate.card_precision_at_k(*_events(rows), k=2)
    assert got["per_day"]["2026-12-01"]["precision"] == pytest.approx((1 / 3) / 2, abs=1e-6)
    shuffled = evaluate.card_precision_at_k(*_events(rows[::-1]), k=2)
    assert shuffled == got
    # k covering the whole tie: no sharing.
    assert evaluate.card_precision_at_k(*_events(rows), k=4)["per_day"]["2026-12-01"]["precision"] == 0.25


def test_card_precision_at_k_refuses_a_zero_capacity_and_handles_no_events() -> None:
    with pytest.raises(ValueError, match="k=0"):
        evaluate.card_precision_at_k([], [], [], [], k=0)
    assert evaluate.card_precision_at_k([], [], [], [], k=5) == {"k": 5, "per_day": {}, "mean": None}


def test_export_has_one_row_per_event_with_the_contract_schema(tmp_path: Path) -> None:
    when = datetime(2026, 12, 1, 10, 30, 0, 123000, tzinfo=UTC)
    base = {"user_id": "u1", "card_id": "c1", "merchant_id": "m1", "event_time": when, "amount_minor": 1234}
    decisions = [
        {**base, "event_id": "e1", "score": 0.9, "action": "BLOCK", "rules_fired": ["r1", "r2"]},
        {**base, "event_id": "e2", "score": 0.1, "action": "APPROVE", "rules_fired": []},
        {**base, "event_id": "e1", "score": 0.9, "action": "BLOCK", "rules_fired": ["r1", "r2"]},  # again
        {**base, "event_id": "e3", "score": 0.4, "action": "REVIEW", "rules_fired": []},
    ]
    labels = {"e1": {"is_fraud": True}, "e3": {"is_fraud": False}}
    path = tmp_path / "out.parquet"
    export.write(path, export.table(decisions, labels, "m-1"))
    back = pq.read_table(path)
    assert back.schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert back.schema.field("rules_fired").type == pa.list_(pa.string())
    assert back.schema.field("is_fraud").type == pa.bool_() and back.schema.field("is_fraud").nullable
    assert back.schema.field("amount_minor").type == pa.int64()
    assert back.column_names == [
        "event_id",
        "user_id",
        "card_id",
        "merchant_id",
        "event_time",
        "amount_minor",
        "score",
        "action",
        "rules_fired",
        "is_fraud",
        "model_version",
    ]
    rows = back.to_pylist()
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3"]
    assert [r["is_fraud"] for r in rows] == [True, None, False]  # e2 has no label: null, not False
    assert rows[0]["rules_fired"] == ["r1", "r2"] and rows[1]["rules_fired"] == []
    assert rows[0]["event_time"] == when
    assert rows[0]["amount_minor"] == 1234 and rows[0]["model_version"] == "m-1"
    assert not list(tmp_path.glob(".*"))  # no temporary file left
