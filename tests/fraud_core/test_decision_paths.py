"""One decision function for every path: the stream job's step (also the batched consumer's), the
naive baseline, and the backtest's re-evaluation at other thresholds all decide through
:func:`fraud_core.decision.decide`, so rules and model combine identically everywhere."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
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

ROOT = Path(__file__).resolve().parents[2]
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


def _calls_decide_and_never_compares_scores(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "decide"]
    compares = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        and any(
            isinstance(x, ast.Attribute) and x.attr in ("threshold", "block_threshold") for x in ast.walk(n)
        )
    ]
    return bool(calls) and not compares


def test_every_path_that_decides_calls_the_one_decide_function() -> None:
    # The job (and batched consumer) through ScoringStep, the naive baseline and the benchmark's
    # stage costs directly; the backtest runs the job itself. None re-implements the rule.
    for module in ("fraud_core/scoring_step.py", "bench/naive_baseline.py", "bench/stages.py"):
        assert _calls_decide_and_never_compares_scores(ROOT / module), module
    job = (ROOT / "flink_jobs/operators.py").read_text()
    assert "ScoringStep(" in job and "WatchedRules(" in job
    assert "start_job" in (ROOT / "backtest/replay.py").read_text()
