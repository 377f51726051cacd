"""One decision function for every path: the stream job's step (also the batched consumer's), the
naive baseline, and the backtest's re-evaluation at other thresholds all decide through
:func:`fraud_core.decision.decide`, so rules and model combine identically everywhere."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import fastavro

import schemas
from backtest import evaluate
from fraud_core.decision import ScoreResult, decide, degraded_result
from fraud_core.enrichment import Enrichment
from fraud_core.feature_catalog import FEATURE_NAMES, FEATURES
from fraud_core.features import build_features
from fraud_core.rules import parse_rules
from fraud_core.scoring_step import ScoringStep
from fraud_core.transaction import Transaction

RULES = parse_rules(
    """
version = "paths-1"
[[sets.always]]
id = "burst"
action = "BLOCK"
reason = "burst"
when = [{ field = "txn_count_1m", op = ">=", value = 5 }]
[[sets.always]]
id = "tiny"
action = "REVIEW"
reason = "tiny"
when = [{ field = "amount_minor", op = "<=", value = 200 }]
[[sets.fallback]]
id = "abroad"
action = "REVIEW"
reason = "abroad"
when = [{ field = "is_foreign", op = "==", value = 1 }]
"""
)
BASE = Transaction(
    str(uuid.uuid4()), "u-1", "c-1", 5000, "EUR", "m-1", "5411", "DE", "POS", 1_767_225_600_000
)


def _cases() -> list[tuple[Transaction, dict[str, float], ScoreResult, bool]]:
    """Every combination of model outcome, rule outcome, blocklist and outage."""
    out = []
    results = [
        ScoreResult(0.1, 0.5, "m1", []),
        ScoreResult(0.6, 0.5, "m1", ["r"], block_threshold=0.9),
        ScoreResult(0.95, 0.5, "m1", ["r"], block_threshold=0.9),
        degraded_result(),
    ]
    for i, (result, count, amount, foreign, blocked) in enumerate(
        itertools.product(results, (1.0, 6.0), (5000, 150), (0.0, 1.0), (False, True))
    ):
        txn = dataclasses.replace(
            BASE, event_id=str(uuid.UUID(int=i + 1)), user_id=f"u-{i}", amount_minor=amount
        )
        features = {**dict.fromkeys(FEATURE_NAMES, 0.0), "txn_count_1m": count, "is_foreign": foreign}
        out.append((txn, features, result, blocked))
    return out


class fake_Store:
    def __init__(self, blocked: Sequence[bool]) -> None:
        self.blocked = list(blocked)

    def fetch(self, user_ids: Sequence[str], card_ids: Sequence[str]) -> Enrichment:
        return Enrichment([None] * len(user_ids), self.blocked, False, 0.0)


class fake_Scorer:
    def __init__(self, results: Sequence[ScoreResult]) -> None:
        self.results = list(results)

    def score(
        self, items: Sequence[tuple[Transaction, Mapping[str, float]]], correlation_id: str = ""
    ) -> list[ScoreResult]:
        return self.results


class fake_Serializer:
    """Checks each decision against the schema, without a registry (schema id 1)."""

    def schema_id(self, topic: str) -> int:
        return 1

    def encode(self, topic: str, record: dict[str, Any]) -> bytes:
        assert fastavro.validation.validate(record, schemas.load(schemas.DECISION), raise_errors=True)
        return repr(sorted((k, repr(v)) for k, v in record.items() if k != "decided_at")).encode()


class fake_Recorder(fake_Serializer):
    """Keeps the record itself, to read its action."""

    def encode(self, topic: str, record: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        super().encode(topic, record)
        return record


def test_the_job_step_decides_exactly_as_decide_does() -> None:
    cases = _cases()
    txns = [c[0] for c in cases]
    # build_features runs inside the step: give it velocities that rebuild each case's features.
    stream = {f.name for f in FEATURES if f.entity in ("user", "merchant", "card")}
    velocity = [{k: c[1][k] for k in c[1] if k in stream} for c in cases]
    step = ScoringStep(
        fake_Store([c[3] for c in cases]),
        fake_Scorer([c[2] for c in cases]),
        fake_Serializer(),  # type: ignore[arg-type]
        "flagged",
        "approved",
        RULES,
    )
    outcome = step.run(txns, velocity, [{}] * len(cases))
    for (txn, _features, result, blocked), (topic, _k, value, _h) in zip(cases, outcome.records, strict=True):
        features = build_features(txn, velocity[txns.index(txn)], None)
        expected = decide(txn, features, result, blocked, False, 0, RULES)
        assert value == fake_Serializer().encode(topic, expected)
        assert topic == ("flagged" if expected["decision"] == "FLAGGED" else "approved")
    assert outcome.blocked == sum(
        decide(t, build_features(t, v, None), r, b, False, 0, RULES)["action"] == "BLOCK"
        for (t, _f, r, b), v in zip(cases, velocity, strict=True)
    )


def test_the_backtest_flags_at_the_recorded_threshold_exactly_what_decide_flagged() -> None:
    records = [decide(t, f, r, b, False, 0, RULES) for t, f, r, b in _cases()]
    assert {r["action"] for r in records} == {"APPROVE", "REVIEW", "BLOCK"}
    labels = {
        r["event_id"]: {"event_id": r["event_id"], "is_fraud": i % 3 == 0} for i, r in enumerate(records)
    }
    live = [r for r in records if not r["degraded"]]
    j = evaluate.join(live, labels)
    assert (evaluate.flagged_at(j, 0.5) == j.decided_flagged).all()
    # A lower review threshold can only add flags; rules and blocklist flags stay at any threshold.
    assert (evaluate.flagged_at(j, 0.99) >= (j.rules_flagged | j.blocklisted)).all()
    assert (evaluate.flagged_at(j, 0.05) >= evaluate.flagged_at(j, 0.5)).all()


# Severity order of the actions, for the hand-written table below.
_SEVERITY = {"APPROVE": 0, "REVIEW": 1, "BLOCK": 2}


def _expected_action(
    score: float, degraded: bool, count: float, amount: int, foreign: float, blocked: bool
) -> str:
    """The action RULES and the thresholds call for, read off their text by hand: the model REVIEWs
    at 0.5 and BLOCKs at 0.9 (says nothing while down); ``burst`` BLOCKs at 5 payments a minute,
    ``tiny`` REVIEWs 200 minor units or less; the fallback ``abroad`` REVIEWs a foreign payment only
    while the model is down; a blocklisted card is BLOCKed; the most severe wins."""
    wanted = ["APPROVE"]
    if not degraded:
        wanted.append("BLOCK" if score >= 0.9 else "REVIEW" if score >= 0.5 else "APPROVE")
    if count >= 5:
        wanted.append("BLOCK")
    if amount <= 200:
        wanted.append("REVIEW")
    if degraded and foreign == 1:
        wanted.append("REVIEW")
    if blocked:
        wanted.append("BLOCK")
    return max(wanted, key=_SEVERITY.__getitem__)


def test_decide_and_the_job_step_give_the_actions_the_rules_text_calls_for() -> None:
    """Every combination of model outcome, rule, fallback rule, blocklist and outage, decided by
    :func:`decide` and by the job's :class:`ScoringStep` (the batched consumer's too), against the
    table written out by hand in ``_expected_action``."""
    cases = _cases()
    expected = [
        _expected_action(r.score, r.degraded, f["txn_count_1m"], t.amount_minor, f["is_foreign"], b)
        for t, f, r, b in cases
    ]
    assert set(expected) == {"APPROVE", "REVIEW", "BLOCK"}
    assert [decide(t, f, r, b, False, 0, RULES)["action"] for t, f, r, b in cases] == expected
    stream = {f.name for f in FEATURES if f.entity in ("user", "merchant", "card")}
    velocity = [{k: c[1][k] for k in c[1] if k in stream} for c in cases]
    step = ScoringStep(
        fake_Store([c[3] for c in cases]),
        fake_Scorer([c[2] for c in cases]),
        fake_Recorder(),  # type: ignore[arg-type]
        "flagged",
        "approved",
        RULES,
    )
    outcome = step.run([c[0] for c in cases], velocity, [{}] * len(cases))
    # The step builds the features itself: is_foreign comes from the profile, absent here.
    in_step = [
        _expected_action(
            r.score,
            r.degraded,
            f["txn_count_1m"],
            t.amount_minor,
            build_features(t, v, None)["is_foreign"],
            b,
        )
        for (t, f, r, b), v in zip(cases, velocity, strict=True)
    ]
    assert in_step != expected  # the fallback rule's cases differ: the table is not trivially met
    got = [(topic, value["action"]) for topic, _k, value, _h in outcome.records]
    assert got == [("approved" if a == "APPROVE" else "flagged", a) for a in in_step]
    assert outcome.blocked == in_step.count("BLOCK")
