"""Unit tests of the backtest's pure parts: range parsing, evaluation and parity (no processes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from backtest import evaluate
from backtest.exceptions import BadInputError, EmptyRangeError, RetentionError
from backtest.parity import compare_with_live, field_differences
from backtest.ranges import PartitionRange, ReplayRange, _Partition, parse_offsets, parse_time, resolve
from fraud_core.cost import CostModel
from fraud_core.features import BLOCKLIST_REASON


def test_parse_time_accepts_iso_and_epoch_ms() -> None:
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # no offset: UTC
    with pytest.raises(BadInputError, match="neither epoch milliseconds nor ISO-8601"):
        parse_time("yesterday")


def test_parse_offsets() -> None:
    assert parse_offsets("0:10-200, 3:0-5") == {0: (10, 200), 3: (0, 5)}
    for bad, message in (
        ("0:10", "expected partition:start-end"),
        ("0:5-1", "after end"),
        ("0:1-2,0:3-4", "twice"),
    ):
        with pytest.raises(BadInputError, match=message):
            parse_offsets(bad)


def test_flink_offsets_strings() -> None:
    r = ReplayRange("t", (PartitionRange(0, 10, 20, 5), PartitionRange(1, 7, 7, 7)), "x")
    assert r.flink_start() == "specific:partition:0,offset:5;partition:1,offset:7"
    assert r.flink_stop() == "specific:partition:0,offset:20;partition:1,offset:7"
    assert (r.events, r.warmup_events) == (10, 5)


def _decision(event_id: str, score: float, threshold: float = 0.5, **extra: Any) -> dict[str, Any]:
    blocked = extra.pop("blocked", False)
    flagged = blocked or score >= threshold
    return {
        "event_id": event_id,
        "score": score,
        "threshold": threshold,
        "decision": "FLAGGED" if flagged else "APPROVED",
        "reasons": [BLOCKLIST_REASON] if blocked else [],
        "amount_minor": 10_000,
        "currency": "EUR",
        "degraded": False,
        "features": {"a": 1.0},
        "model_version": "m1",
        **extra,
    }


def _label(event_id: str, fraud: bool, kind: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id, "is_fraud": fraud, "fraud_type": kind}


@pytest.fixture
def joined() -> evaluate.Joined:
    decisions = [
        _decision("f1", 0.9),  # caught
        _decision("f2", 0.3),  # missed (100 EUR)
        _decision("l1", 0.7),  # false positive
        _decision("l2", 0.1),
        _decision("l3", 0.2, blocked=True),  # blocklisted: flagged at any threshold
        _decision("f1", 0.9),  # duplicate
        _decision("u1", 0.4),  # no label
    ]
    labels = {
        "f1": _label("f1", True, "card_testing"),
        "f2": _label("f2", True, "account_takeover"),
        "l1": _label("l1", False),
        "l2": _label("l2", False),
        "l3": _label("l3", False),
    }
    return evaluate.join(decisions, labels)


def test_join_counts_what_it_cannot_evaluate(joined: evaluate.Joined) -> None:
    assert (joined.decisions, joined.labelled, joined.unlabelled, joined.duplicates) == (7, 5, 1, 1)
    assert joined.blocklisted.tolist() == [False, False, False, False, True]


def test_metrics_at_the_recorded_decisions(joined: evaluate.Joined) -> None:
    m = evaluate.decision_metrics(joined, joined.action, CostModel())
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 2, 1, 1)
    assert (m["reviewed"], m["blocked"]) == (2, 1)  # f1 and l1 reviewed; l3's card is blocklisted
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert m["flagged_rate"] == pytest.approx(3 / 5)
    assert (m["fraud_eur_caught"], m["fraud_eur_missed"]) == (100.0, 100.0)
    # f2 missed (100 EUR, above the 50 EUR minimum), two reviews at 5, l3 legitimate and blocked: 100.
    assert (m["missed_fraud_cost_eur"], m["review_cost_eur"], m["false_block_cost_eur"]) == (
        100.0,
        10.0,
        100.0,
    )
    assert m["total_cost_eur"] == 210.0


def test_other_thresholds_follow_the_decision_rule(joined: evaluate.Joined) -> None:
    assert evaluate.flagged_at(joined, 0.5).tolist() == joined.decided_flagged.tolist()
    assert evaluate.flagged_at(joined, 0.25).tolist() == [True, True, True, False, True]
    assert evaluate.flagged_at(joined, 0.95).tolist() == [False, False, False, False, True]


def test_threshold_free_measures(joined: evaluate.Joined) -> None:
    from sklearn.metrics import average_precision_score

    assert evaluate.pr_auc(joined) == pytest.approx(
        average_precision_score([1, 1, 0, 0, 0], [0.9, 0.3, 0.7, 0.1, 0.2])
    )
    # FPR 0 reached only at threshold 0.9 -> recall 0.5; at most 1/3 FPR -> still 0.5 (0.3 is below 0.7)
    assert evaluate.recall_at_fpr(joined, 0.01) == 0.5
    assert evaluate.recall_at_fpr(joined, 0.34) == 1.0


def test_per_scenario_and_cost_curve(joined: evaluate.Joined) -> None:
    s = evaluate.per_scenario(joined, joined.decided_flagged)
    assert s["card_testing"]["flagged"] == 1 and s["account_takeover"]["flagged"] == 0
    assert s["legit"] == {
        "events": 3,
        "flagged": 2,
        "flagged_share": pytest.approx(2 / 3),
        "amount_eur": 300.0,
        "amount_eur_flagged": 200.0,
    }
    curve = evaluate.cost_curve(joined, CostModel(), thresholds=(0.05, 0.25, 0.5, 0.95))
    # l3 (legitimate, blocklisted) is blocked at every threshold: 100 each time. 0.05: 4 reviews = 20;
    # 0.25: 3 reviews = 15; 0.5: 2 reviews + f2 missed 100; 0.95: f1 and f2 missed, 200.
    assert curve["total_cost_eur"] == [120.0, 115.0, 210.0, 300.0]
    assert curve["best_threshold"] == 0.25


def test_single_class_gives_none_not_a_crash() -> None:
    j = evaluate.join([_decision("a", 0.2)], {"a": _label("a", False)})
    m = evaluate.evaluate_model(j, 0.5, [0.3], CostModel())
    assert m["pr_auc"] is None and m["recall_at_fpr"]["0.01"] is None
    assert m["at_threshold"]["recall"] is None


def test_compare_is_model_minus_reference(joined: evaluate.Joined) -> None:
    a = evaluate.evaluate_model(joined, 0.5, [], CostModel())
    b = {**a, "pr_auc": a["pr_auc"] + 0.1}
    diff = evaluate.compare({"live": a, "new": b}, "live")
    assert diff["live"]["pr_auc"] == 0.0
    assert diff["new"]["pr_auc"] == pytest.approx(0.1)


def test_parity_lists_only_what_differs() -> None:
    live = {
        "e1": _decision("e1", 0.9),
        "e2": _decision("e2", 0.2),
        "e3": _decision("e3", 0.3, model_version="m0"),
    }
    mine = {
        "e1": _decision("e1", 0.9),
        "e2": _decision("e2", 0.6, features={"a": 2.0}),
        "e3": _decision("e3", 0.3),
        "e4": _decision("e4", 0.1),
    }
    result = compare_with_live("m1", mine, live)
    assert (result.compared, result.identical, result.differing) == (2, 1, 1)
    assert result.not_scored_live == 1 and result.other_live_model == {"m0": 1}
    diff = result.differences[0]
    assert diff["event_id"] == "e2"
    assert diff["decision"] == {"live": "APPROVED", "backtest": "FLAGGED"}
    assert diff["features"] == {"a": {"live": 1.0, "backtest": 2.0}}
    assert result.to_json()["verdict"] == "differences"
    assert field_differences(mine["e1"], live["e1"]) == {}
    assert compare_with_live("m1", {"e1": mine["e1"]}, live).to_json()["verdict"] == "identical"


def test_joined_arrays_are_aligned(joined: evaluate.Joined) -> None:
    assert np.array_equal(joined.is_fraud, [True, True, False, False, False])
    assert joined.fraud_type.tolist() == ["card_testing", "account_takeover", "legit", "legit", "legit"]


class FakeInspector:
    """Partition 0 lost offsets 0-4 to retention (oldest retained: offset 5 at t=5000); partition 1
    never lost any. Record n of a partition has timestamp n * 1000."""

    topic = "payments.initiated"
    partitions = {0: _Partition(5, 10), 1: _Partition(0, 4)}

    def offsets_for_time(self, ms: int) -> dict[int, int]:
        return {p: min(v.high, max(v.low, -(-ms // 1000))) for p, v in self.partitions.items()}

    def timestamp_at(self, partition: int, offset: int) -> int | None:
        return offset * 1000 if offset < self.partitions[partition].high else None


def test_resolve_refuses_ranges_past_retention() -> None:
    inspector: Any = FakeInspector()
    with pytest.raises(RetentionError, match=r"offset 2 is past retention: the oldest retained offset is 5"):
        resolve(inspector, offsets={0: (2, 8)})
    with pytest.raises(RetentionError, match="past the retention"):
        resolve(inspector, from_ms=1000)
    with pytest.raises(EmptyRangeError, match="no events"):
        resolve(inspector, offsets={0: (6, 6)})
    with pytest.raises(BadInputError, match="no partition 7"):
        resolve(inspector, offsets={7: (0, 1)})


def test_resolve_times_and_warmup() -> None:
    inspector: Any = FakeInspector()
    r = resolve(inspector, from_ms=6000, to_ms=9000, warmup_ms=2000)
    assert [(p.partition, p.warmup_start, p.start, p.end) for p in r.partitions] == [
        (0, 5, 6, 9),
        (1, 4, 4, 4),
    ]
    assert r.events == 3 and r.warmup_events == 1
    everything = resolve(inspector)
    assert [(p.start, p.end) for p in everything.partitions] == [(5, 10), (0, 4)]


def test_analyst_labels_count_like_simulator_labels_and_sources_are_reported() -> None:
    decisions = [
        {"event_id": e, "score": s, "decision": d, "amount_minor": 1000, "currency": "EUR"}
        for e, s, d in (
            ("a", 0.9, "FLAGGED"),
            ("b", 0.1, "APPROVED"),
            ("c", 0.8, "FLAGGED"),
            ("d", 0.2, "APPROVED"),
        )
    ]
    labels = {
        "a": {"event_id": "a", "is_fraud": True, "fraud_type": "card_testing", "source": "simulator"},
        "b": {"event_id": "b", "is_fraud": False, "fraud_type": None},  # written before `source` existed
        "c": {"event_id": "c", "is_fraud": True, "fraud_type": None, "source": "analyst"},
        "x": {"event_id": "x", "is_fraud": False, "fraud_type": None, "source": "chargeback"},  # not replayed
    }
    joined = evaluate.join(decisions, labels)
    assert sorted(joined.event_id.tolist()) == ["a", "b", "c"]
    assert joined.is_fraud.tolist() == [True, False, True]  # the analyst's confirmation is a fraud like any
    assert joined.unlabelled == 1
    assert evaluate.label_sources(labels, [d["event_id"] for d in decisions]) == {
        "analyst": 1,
        "simulator": 2,
    }
