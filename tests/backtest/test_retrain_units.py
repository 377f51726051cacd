"""``make retrain``'s pure parts: card precision@k, per-action precision and recall, the business
cost of each model's decisions, the promotion rule, the held-out offsets, and the console page that
shows the comparison. No processes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from backtest.retrain import (
    action_metrics,
    decide_promotion,
    held_out_offsets,
    model_metrics,
    side_by_side,
)
from console.comparisons import comparison_path, comparisons_body
from fraud_core.cost import CostModel
from fraud_core.transaction import Transaction
from inference_service.training.from_topics import Positioned, TopicHistory

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_action_metrics_count_review_block_and_flagged() -> None:
    actions = ["APPROVE", "REVIEW", "REVIEW", "BLOCK", "BLOCK", "APPROVE"]
    fraud = [True, True, False, True, True, False]
    out = action_metrics(actions, fraud)
    assert out["REVIEW"] == {"payments": 2, "frauds": 1, "precision": 0.5, "recall": 0.25}
    assert out["BLOCK"] == {"payments": 2, "frauds": 2, "precision": 1.0, "recall": 0.5}
    assert out["flagged"] == {"payments": 4, "frauds": 3, "precision": 0.75, "recall": 0.75}


def _txn(n: int, t: int, card: str, amount_minor: int = 10_000) -> Transaction:
    return Transaction(str(uuid.UUID(int=n)), f"u{n}", card, amount_minor, "EUR", "m", "5411", "BE", "POS", t)


def test_model_metrics_join_decisions_with_labels_and_price_them() -> None:
    txns = [_txn(i, T0 + i, f"c{i}") for i in range(5)]
    payments = {t.event_id: t for t in txns}
    labels = {
        txns[0].event_id: True,
        txns[1].event_id: False,
        txns[2].event_id: True,
        txns[3].event_id: False,
    }
    decisions = [
        {"event_id": txns[0].event_id, "score": 0.9, "action": "BLOCK", "decision": "FLAGGED"},
        {"event_id": txns[0].event_id, "score": 0.9, "action": "BLOCK", "decision": "FLAGGED"},  # duplicate
        {"event_id": txns[1].event_id, "score": 0.7, "action": "BLOCK", "decision": "FLAGGED"},
        {"event_id": txns[2].event_id, "score": 0.1, "action": "APPROVE", "decision": "APPROVED"},
        {"event_id": txns[3].event_id, "score": 0.5, "action": "REVIEW", "decision": "FLAGGED"},
        {"event_id": txns[4].event_id, "score": 0.2, "action": "APPROVE", "decision": "APPROVED"},  # no label
        {"event_id": str(uuid.UUID(int=99)), "score": 0.2, "action": "APPROVE", "decision": "APPROVED"},
    ]
    cost = CostModel(review_cost_eur=5, false_block_cost_eur=100, min_missed_fraud_eur=50)
    out = model_metrics(decisions, payments, labels, cost, k=100)
    assert out["decided"] == 5  # the duplicate and the payment outside the range are not counted
    assert out["labelled"] == 4
    assert out["unlabelled_not_evaluated"] == 1
    # A false block (100) + one review (5) + one missed fraud of 100 EUR (100).
    assert out["cost_eur"] == 205.0
    # Scores 0.9 (fraud), 0.7, 0.5, 0.1 (fraud): precision 1 at the first, 2/4 at the last.
    assert out["average_precision"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert out["actions"]["BLOCK"]["precision"] == 0.5


def test_promotion_rule() -> None:
    assert decide_promotion(1000.0, 950.0, 0.05, False)[0] is True  # exactly 5% lower
    assert decide_promotion(1000.0, 951.0, 0.05, False)[0] is False
    _promote, rule = decide_promotion(1000.0, 951.0, 0.05, False)
    assert "951.00 EUR is above 950.00 EUR" in rule
    assert decide_promotion(1000.0, 2000.0, 0.05, True)[0] is True
    assert decide_promotion(None, 2000.0, 0.05, False) == (
        True,
        "there is no live model: the challenger goes live",
    )


def test_held_out_offsets_span_the_range_per_partition() -> None:
    payments = [
        Positioned(_txn(0, T0, "a"), 0, 10),
        Positioned(_txn(1, T0 + DAY, "a"), 0, 11),
        Positioned(_txn(2, T0 + 2 * DAY, "a"), 0, 12),
        Positioned(_txn(3, T0 + DAY, "a"), 1, 7),
        Positioned(_txn(4, T0 + 3 * DAY, "a"), 1, 8),
        Positioned(_txn(5, T0, "a"), 2, 3),
    ]
    history = TopicHistory(T0 + 9 * DAY, payments, [], {})
    assert held_out_offsets(history, T0 + DAY, T0 + 2 * DAY) == {0: (11, 13), 1: (7, 8)}


def _comparison() -> dict[str, object]:
    metrics = {
        "decided": 10,
        "labelled": 8,
        "cost_eur": 120.5,
        "average_precision": 0.42,
        "card_precision_at_k": {"k": 100, "mean": 0.3, "per_day": {}},
        "actions": {a: {"precision": 0.5, "recall": 0.25} for a in ("REVIEW", "BLOCK", "flagged")},
    }
    return {
        "challenger": "hgb-new",
        "live": "hgb-old",
        "k": 100,
        "window": {"from": "2026-01-01T00:00:00.000Z", "to": "2026-01-31T00:00:00.000Z"},
        "held_out": {"from": "a", "to": "b", "what": "the challenger's held-out period"},
        "models": {
            "hgb-old": {"role": "live", "metrics": {**metrics, "cost_eur": 200.0}},
            "hgb-new": {"role": "challenger", "metrics": metrics},
        },
        "rule": "promote when <script>",
        "promoted": True,
        "now_live": "hgb-new",
        "shadow": None,
    }


def test_side_by_side_names_both_models_and_their_costs() -> None:
    table = side_by_side(_comparison())
    assert "hgb-old" in table.splitlines()[0] and "hgb-new" in table.splitlines()[0]
    cost_line = next(line for line in table.splitlines() if line.startswith("cost (EUR)"))
    assert cost_line.split()[-2:] == ["200.00", "120.50"]


def test_console_page_shows_the_comparison_escaped(tmp_path: Path) -> None:
    assert "No comparison yet" in comparisons_body(tmp_path)
    path = comparison_path(tmp_path, "hgb-new")
    path.parent.mkdir()
    path.write_text(json.dumps(_comparison()))
    (path.parent / "broken.json").write_text("{")
    html = comparisons_body(tmp_path)
    assert "Challenger hgb-new: promoted to live" in html
    assert "120.50" in html and "200.00" in html and "42.0%" not in html and "0.4200" in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "broken.json: unreadable" in html
