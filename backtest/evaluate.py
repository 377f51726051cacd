"""Metrics of a backtest, as pure functions of decision records and labels (no I/O).

Conventions (stated in every report):

* An event counts only when it has a label; unlabelled events are counted, not evaluated.
* "Flagged at threshold t" means what the live decision (:func:`fraud_core.decision.decide`) would
  do with the review threshold at t: the card is on the blocklist, or a rule fired (every rule
  asks for REVIEW or BLOCK), or ``score >= t``. At a model's own threshold this is exactly the
  recorded decision (tests/backtest check it against ``decide``).
* Cost in EUR = fraud amount missed (the chargeback) + flagged count x review cost per flag; the
  same business cost the trainer minimises when it picks a model's threshold.
* Recall at a fixed false-positive rate is read off the ROC curve: the best recall whose FPR does
  not exceed the target, as the trainer's model card computes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from fraud_core.features import BLOCKLIST_REASON
from fraud_core.reference import to_eur

DEFAULT_REVIEW_COST_EUR = 5.0
FIXED_FPRS = (0.01, 0.05)
LEGIT = "legit"
COST_CURVE_THRESHOLDS = tuple(round(t, 3) for t in np.linspace(0.01, 0.99, 99))

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Joined:
    """One model's labelled decisions as aligned arrays, plus what could not be evaluated."""

    event_id: npt.NDArray[np.str_]
    score: FloatArray
    decided_flagged: BoolArray  # the recorded decision
    blocklisted: BoolArray
    rules_flagged: BoolArray  # at least one rule fired (REVIEW or BLOCK whatever the score)
    is_fraud: BoolArray
    fraud_type: npt.NDArray[np.str_]  # "legit" for legitimate events
    amount_eur: FloatArray
    decisions: int
    unlabelled: int
    duplicates: int
    degraded: int

    @property
    def labelled(self) -> int:
        return len(self.event_id)


def join(decisions: Iterable[Mapping[str, Any]], labels: Mapping[str, Mapping[str, Any]]) -> Joined:
    """Decisions joined with labels by ``event_id``; a repeated event_id counts once (the first)."""
    seen: set[str] = set()
    rows: list[tuple[str, float, bool, bool, bool, str, float, bool]] = []
    total = duplicates = unlabelled = degraded = 0
    for d in decisions:
        total += 1
        event_id = str(d["event_id"])
        if event_id in seen:
            duplicates += 1
            continue
        seen.add(event_id)
        degraded += bool(d.get("degraded"))
        label = labels.get(event_id)
        if label is None:
            unlabelled += 1
            continue
        fraud = bool(label["is_fraud"])
        reasons = d.get("reasons") or []
        rows.append(
            (
                event_id,
                float(d["score"]),
                d["decision"] == "FLAGGED",
                bool(reasons) and reasons[0] == BLOCKLIST_REASON,
                fraud,
                str(label.get("fraud_type") or "unknown") if fraud else LEGIT,
                to_eur(int(d.get("amount_minor") or 0), str(d.get("currency") or "EUR")),
                bool(d.get("rules_fired")),
            )
        )
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    return Joined(
        np.array(cols[0], dtype=str),
        np.array(cols[1], dtype=np.float64),
        np.array(cols[2], dtype=bool),
        np.array(cols[3], dtype=bool),
        np.array(cols[7], dtype=bool),
        np.array(cols[4], dtype=bool),
        np.array(cols[5], dtype=str),
        np.array(cols[6], dtype=np.float64),
        total,
        unlabelled,
        duplicates,
        degraded,
    )


def label_sources(labels: Mapping[str, Mapping[str, Any]], event_ids: Iterable[str]) -> dict[str, int]:
    """How many of the labels of ``event_ids`` came from each source (simulator, analyst,
    chargeback). Every source counts the same in the metrics; labels written before the field
    existed read as ``simulator``."""
    counts: dict[str, int] = {}
    for event_id in set(event_ids):
        label = labels.get(event_id)
        if label is not None:
            source = str(label.get("source") or "simulator")
            counts[source] = counts.get(source, 0) + 1
    return dict(sorted(counts.items()))


def flagged_at(j: Joined, threshold: float) -> BoolArray:
    """What the decision flags at review threshold ``threshold``: blocklisted cards, payments a rule
    fired on, and scores at or above it (the model's block threshold only turns REVIEW into BLOCK,
    so it does not change what is flagged)."""
    return np.asarray(j.blocklisted | j.rules_flagged | (j.score >= threshold), dtype=bool)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def confusion(is_fraud: BoolArray, flagged: BoolArray) -> dict[str, int]:
    return {
        "tp": int((flagged & is_fraud).sum()),
        "fp": int((flagged & ~is_fraud).sum()),
        "fn": int((~flagged & is_fraud).sum()),
        "tn": int((~flagged & ~is_fraud).sum()),
    }


def decision_metrics(j: Joined, flagged: BoolArray, review_cost_eur: float) -> dict[str, Any]:
    """Precision, recall, F1, rates and EUR figures of one set of flags over ``j``."""
    c = confusion(j.is_fraud, flagged)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    f1: float | None = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    caught = float(j.amount_eur[flagged & j.is_fraud].sum())
    missed = float(j.amount_eur[~flagged & j.is_fraud].sum())
    review = int(flagged.sum()) * review_cost_eur
    return {
        **c,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "flagged": int(flagged.sum()),
        "flagged_rate": _ratio(int(flagged.sum()), len(flagged)),
        "false_positive_rate": _ratio(c["fp"], c["fp"] + c["tn"]),
        "fraud_eur_caught": round(caught, 2),
        "fraud_eur_missed": round(missed, 2),
        "review_cost_eur": round(review, 2),
        "total_cost_eur": round(missed + review, 2),
    }


def both_classes(j: Joined) -> bool:
    return bool(j.is_fraud.any() and (~j.is_fraud).any())


def pr_auc(j: Joined) -> float | None:
    """Average precision of the scores (sklearn); None without both classes."""
    return float(average_precision_score(j.is_fraud, j.score)) if both_classes(j) else None


def recall_at_fpr(j: Joined, max_fpr: float) -> float | None:
    """Best recall whose false-positive rate is at most ``max_fpr``; None without both classes."""
    if not both_classes(j):
        return None
    fpr, tpr, _ = roc_curve(j.is_fraud, j.score)
    return float(tpr[fpr <= max_fpr].max())


def per_scenario(j: Joined, flagged: BoolArray) -> dict[str, dict[str, Any]]:
    """Per fraud scenario: events, flagged, recall and EUR caught/missed; for ``legit``, the flag rate."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(j.fraud_type.tolist())):
        mask = j.fraud_type == kind
        hit = flagged & mask
        out[kind] = {
            "events": int(mask.sum()),
            "flagged": int(hit.sum()),
            "flagged_share": _ratio(int(hit.sum()), int(mask.sum())),
            "amount_eur": round(float(j.amount_eur[mask].sum()), 2),
            "amount_eur_flagged": round(float(j.amount_eur[hit].sum()), 2),
        }
    return out


def cost_curve(
    j: Joined, review_cost_eur: float, thresholds: Sequence[float] = COST_CURVE_THRESHOLDS
) -> dict[str, Any]:
    """Total cost (missed fraud EUR + reviews) at each threshold, and the cheapest threshold."""
    totals = []
    for t in thresholds:
        m = decision_metrics(j, flagged_at(j, t), review_cost_eur)
        totals.append(m["total_cost_eur"])
    best = int(np.argmin(totals)) if totals else 0
    return {
        "thresholds": list(thresholds),
        "total_cost_eur": totals,
        "best_threshold": thresholds[best] if totals else None,
        "best_total_cost_eur": totals[best] if totals else None,
    }


def evaluate_model(
    j: Joined, threshold: float, extra_thresholds: Sequence[float], review_cost_eur: float
) -> dict[str, Any]:
    """Everything the report says about one model: at its recorded decisions (own threshold),
    at each extra threshold, threshold-free measures, per scenario and the cost curve."""
    at_own = decision_metrics(j, j.decided_flagged, review_cost_eur)
    return {
        "threshold": threshold,
        "events": {
            "decisions": j.decisions,
            "labelled": j.labelled,
            "unlabelled": j.unlabelled,
            "duplicates": j.duplicates,
            "degraded": j.degraded,
            "fraud": int(j.is_fraud.sum()),
            "blocklisted": int(j.blocklisted.sum()),
            "rules_flagged": int(j.rules_flagged.sum()),
        },
        "pr_auc": pr_auc(j),
        "recall_at_fpr": {f"{fpr:g}": recall_at_fpr(j, fpr) for fpr in FIXED_FPRS},
        "at_threshold": at_own,
        "at_thresholds": {
            f"{t:g}": decision_metrics(j, flagged_at(j, t), review_cost_eur) for t in extra_thresholds
        },
        "per_scenario": per_scenario(j, j.decided_flagged),
        "cost_curve": cost_curve(j, review_cost_eur),
    }


_COMPARED = (
    "precision",
    "recall",
    "f1",
    "flagged_rate",
    "fraud_eur_caught",
    "fraud_eur_missed",
    "review_cost_eur",
    "total_cost_eur",
)


def compare(metrics: Mapping[str, Mapping[str, Any]], reference: str) -> dict[str, dict[str, float | None]]:
    """Per model, the difference to ``reference`` (model minus reference) of the headline metrics."""
    ref = metrics[reference]
    out: dict[str, dict[str, float | None]] = {}
    for version, m in metrics.items():
        row: dict[str, float | None] = {}
        for key in ("pr_auc",):
            row[key] = _diff(m[key], ref[key])
        for fpr in m["recall_at_fpr"]:
            row[f"recall_at_fpr_{fpr}"] = _diff(m["recall_at_fpr"][fpr], ref["recall_at_fpr"][fpr])
        for key in _COMPARED:
            row[key] = _diff(m["at_threshold"][key], ref["at_threshold"][key])
        out[version] = row
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 6)


def pr_curve(j: Joined) -> tuple[FloatArray, FloatArray]:
    """(recall, precision) points of the PR curve, for plotting."""
    precision, recall, _ = precision_recall_curve(j.is_fraud, j.score)
    return recall, precision


def dead_letter_counts(dead_letters: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Dead letters by error type."""
    return dict(sorted(Counter(str(d.get("error_type")) for d in dead_letters).items()))
