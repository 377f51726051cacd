"""Metrics of a backtest, as pure functions of decision records and labels (no I/O).

Conventions (stated in every report):

* An event counts only when it has a label; unlabelled events are counted, not evaluated.
* "The action at threshold t" is what the live decision (:func:`fraud_core.decision.decide`) would
  do with the review threshold at t and the model's own block threshold: the strongest of the
  model's action (BLOCK at ``score >= block_threshold``, REVIEW at ``score >= t``) and what the
  rules and the blocklist asked for, which is read off the recorded decision (see :func:`join`).
  At a model's own threshold this is exactly the recorded action. Flagged = REVIEW or BLOCK.
* Cost in EUR is :class:`fraud_core.cost.CostModel`: the same business cost the trainer minimises
  when it picks a model's thresholds (missed fraud at its amount but at least a minimum, each
  review, each legitimate payment blocked).
* Card precision@k per UTC day (:func:`card_precision_at_k`) is over the labelled events.
* Recall at a fixed false-positive rate is read off the ROC curve: the best recall whose FPR does
  not exceed the target, as the trainer's model card computes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata
from sklearn.metrics import precision_recall_curve, roc_curve

from fraud_core.cost import CostModel
from fraud_core.decision import BLOCKLIST_UNAVAILABLE_REASON
from fraud_core.features import BLOCKLIST_REASON
from fraud_core.reference import to_eur
from fraud_core.rules import ACTIONS, APPROVE, BLOCK, REVIEW

DEFAULT_K = 100
DAY_MS = 86_400_000
FIXED_FPRS = (0.01, 0.05)
LEGIT = "legit"
COST_CURVE_THRESHOLDS = tuple(round(t, 3) for t in np.linspace(0.01, 0.99, 99))

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
_SEVERITY = {a: i for i, a in enumerate(ACTIONS)}  # APPROVE 0 < REVIEW 1 < BLOCK 2


def epoch_ms(value: Any) -> int:
    """Epoch ms of a decoded ``timestamp-millis`` field (fastavro gives aware datetimes) or an int."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return int(value or 0)


def _model_severity(score: FloatArray, threshold: FloatArray | float, block: FloatArray) -> IntArray:
    """:func:`fraud_core.decision.model_action` as severities, vectorised (NaN block: never blocks)."""
    with np.errstate(invalid="ignore"):
        blocked = ~np.isnan(block) & (score >= block)
    return np.where(blocked, 2, np.where(score >= threshold, 1, 0)).astype(np.int64)


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
    action: IntArray  # the recorded action's severity (APPROVE 0, REVIEW 1, BLOCK 2)
    floor: IntArray  # the severity rules and blocklist asked for, whatever the score
    block_threshold: FloatArray  # NaN: the model never blocks on the score
    card_id: npt.NDArray[np.str_]
    event_time_ms: IntArray

    @property
    def labelled(self) -> int:
        return len(self.event_id)


def join(decisions: Iterable[Mapping[str, Any]], labels: Mapping[str, Mapping[str, Any]]) -> Joined:
    """Decisions joined with labels by ``event_id``; a repeated event_id counts once (the first)."""
    seen: set[str] = set()
    rows: list[tuple[Any, ...]] = []
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
        blocklisted = bool(reasons) and reasons[0] == BLOCKLIST_REASON
        rules = bool(d.get("rules_fired"))
        flagged = d["decision"] == "FLAGGED"
        # Records written before ``action`` existed: FLAGGED is REVIEW, or BLOCK for a blocklisted card.
        action = str(d.get("action") or (BLOCK if blocklisted else REVIEW if flagged else APPROVE))
        score = float(d["score"])
        block = d.get("block_threshold")
        block_f = float("nan") if block is None else float(block)
        rows.append(
            (
                event_id,
                score,
                flagged,
                blocklisted,
                fraud,
                str(label.get("fraud_type") or "unknown") if fraud else LEGIT,
                to_eur(int(d.get("amount_minor") or 0), str(d.get("currency") or "EUR")),
                rules,
                _SEVERITY[action],
                _floor(_SEVERITY[action], score, float(d.get("threshold", 1.0)), block_f, rules, reasons),
                block_f,
                str(d.get("card_id") or ""),
                epoch_ms(d.get("event_time")),
            )
        )
    cols = list(zip(*rows, strict=True)) if rows else [()] * 13
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
        np.array(cols[8], dtype=np.int64),
        np.array(cols[9], dtype=np.int64),
        np.array(cols[10], dtype=np.float64),
        np.array(cols[11], dtype=str),
        np.array(cols[12], dtype=np.int64),
    )


def _floor(
    recorded: int, score: float, threshold: float, block: float, rules: bool, reasons: list[str]
) -> int:
    """What the rules and the blocklist asked for, read off a recorded decision.

    Stronger than the model's own action: that is the floor. Equal at REVIEW: REVIEW when a rule
    fired or the payment was held (every rule asks for REVIEW or BLOCK), else nothing. Equal at
    BLOCK: the model blocks at every review threshold (the block threshold is fixed), so the floor
    never shows and APPROVE is exact. Equal at APPROVE: nothing fired."""
    own = int(_model_severity(np.array([score]), threshold, np.array([block]))[0])
    if recorded > own:
        return recorded
    held = bool(reasons) and reasons[0] == BLOCKLIST_UNAVAILABLE_REASON
    return 1 if recorded == 1 and (rules or held) else 0


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


def action_at(j: Joined, threshold: float) -> IntArray:
    """The action (severity) the decision takes at review threshold ``threshold``: the strongest of
    the model's action there (its own block threshold unchanged) and what rules and blocklist asked."""
    return np.maximum(_model_severity(j.score, threshold, j.block_threshold), j.floor)


def flagged_at(j: Joined, threshold: float) -> BoolArray:
    """What the decision flags (REVIEW or BLOCK) at review threshold ``threshold``."""
    return np.asarray(action_at(j, threshold) > 0, dtype=bool)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def confusion(is_fraud: BoolArray, flagged: BoolArray) -> dict[str, int]:
    return {
        "tp": int((flagged & is_fraud).sum()),
        "fp": int((flagged & ~is_fraud).sum()),
        "fn": int((~flagged & is_fraud).sum()),
        "tn": int((~flagged & ~is_fraud).sum()),
    }


def decision_metrics(j: Joined, action: IntArray, cost: CostModel) -> dict[str, Any]:
    """Precision, recall, F1, rates and EUR figures of one set of actions (severities) over ``j``."""
    flagged = np.asarray(action > 0, dtype=bool)
    c = confusion(j.is_fraud, flagged)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    f1: float | None = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    caught = float(j.amount_eur[flagged & j.is_fraud].sum())
    missed = float(j.amount_eur[~flagged & j.is_fraud].sum())
    priced = cost.breakdown(j.is_fraud, j.amount_eur, np.array(ACTIONS)[action] if len(action) else [])
    return {
        **c,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "flagged": int(flagged.sum()),
        "reviewed": int((action == 1).sum()),
        "blocked": int((action == 2).sum()),
        "flagged_rate": _ratio(int(flagged.sum()), len(flagged)),
        "false_positive_rate": _ratio(c["fp"], c["fp"] + c["tn"]),
        "fraud_eur_caught": round(caught, 2),
        "fraud_eur_missed": round(missed, 2),
        "missed_fraud_cost_eur": round(priced["missed_fraud_eur"], 2),
        "review_cost_eur": round(priced["review_eur"], 2),
        "false_block_cost_eur": round(priced["false_block_eur"], 2),
        "total_cost_eur": round(priced["total_eur"], 2),
    }


def both_classes(j: Joined) -> bool:
    return bool(j.is_fraud.any() and (~j.is_fraud).any())


def _both(y: BoolArray) -> bool:
    return bool(y.any() and (~y).any())


def roc_auc(is_fraud: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    """Area under the ROC curve: the probability that a random fraud scores above a random
    legitimate payment, ties counting one half (Mann-Whitney U over mid-ranks). None without both
    classes."""
    y = np.asarray(is_fraud, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if not _both(y):
        return None
    ranks = rankdata(s)  # mid-ranks for ties
    pos, neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def average_precision(is_fraud: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    """Average precision: the precision at each distinct score threshold, from the highest down,
    weighted by the recall it adds (tied scores enter together). None without both classes."""
    y = np.asarray(is_fraud, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if not _both(y):
        return None
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_group = np.r_[s[1:] != s[:-1], True]  # the end of each run of tied scores
    tp = np.cumsum(y)[last_of_group]
    seen = (np.arange(len(s)) + 1)[last_of_group]
    recall_gain = np.diff(np.r_[0, tp]) / y.sum()
    return float((recall_gain * tp / seen).sum())


def pr_auc(j: Joined) -> float | None:
    """Average precision of the scores (:func:`average_precision`); None without both classes."""
    return average_precision(j.is_fraud, j.score)


def card_precision_at_k(
    card_id: Sequence[str] | npt.NDArray[np.str_],
    event_time_ms: npt.ArrayLike,
    score: npt.ArrayLike,
    is_fraud: npt.ArrayLike,
    k: int = DEFAULT_K,
) -> dict[str, Any]:
    """Card precision@k per UTC day of event time: the team reviews ``k`` cards a day, the ones
    whose highest score that day is highest; the precision is the share of them with a fraud that
    day.

    A day with fewer than ``k`` cards reviews them all (precision over those, not over ``k``: the
    capacity left idle is no miss). Cards tied at the k-th score are counted by expectation: each
    tied card gets an equal share of the slots left, so the figure does not depend on an arbitrary
    order. A day without fraud scores 0. Returns ``{"k", "per_day": {date: {cards, reviewed,
    fraud_cards, precision}}, "mean"}`` (``mean`` over the days; None without any day).

    Raises:
        ValueError: ``k`` < 1, or the arrays differ in length.
    """
    if k < 1:
        raise ValueError(f"card precision@k: k={k!r} must be at least 1")
    cards = np.asarray(card_id, dtype=str)
    times = np.asarray(event_time_ms, dtype=np.int64)
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(is_fraud, dtype=bool)
    if not len(cards) == len(times) == len(s) == len(y):
        raise ValueError(
            f"card precision@k: arrays differ in length: {len(cards)}, {len(times)}, {len(s)}, {len(y)}"
        )
    per_day: dict[str, dict[str, Any]] = {}
    days = times // DAY_MS
    for day in np.unique(days):
        mine = days == day
        best: dict[str, float] = {}
        fraud: dict[str, bool] = {}
        for card, sc, fr in zip(cards[mine].tolist(), s[mine].tolist(), y[mine].tolist(), strict=True):
            best[card] = max(sc, best.get(card, -np.inf))
            fraud[card] = fraud.get(card, False) or fr
        top = np.array(sorted(best.values(), reverse=True))
        reviewed = min(k, len(top))
        cut = top[reviewed - 1]
        above = [c for c, v in best.items() if v > cut]
        tied = [c for c, v in best.items() if v == cut]
        share = (reviewed - len(above)) / len(tied)
        hits = sum(fraud[c] for c in above) + share * sum(fraud[c] for c in tied)
        date = datetime.fromtimestamp(int(day) * DAY_MS / 1000, tz=UTC).date().isoformat()
        per_day[date] = {
            "cards": len(top),
            "reviewed": reviewed,
            "fraud_cards": int(sum(fraud.values())),
            "precision": round(hits / reviewed, 6),
        }
    values = [d["precision"] for d in per_day.values()]
    return {"k": k, "per_day": per_day, "mean": round(float(np.mean(values)), 6) if values else None}


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
    j: Joined, cost: CostModel, thresholds: Sequence[float] = COST_CURVE_THRESHOLDS
) -> dict[str, Any]:
    """Business cost (:class:`fraud_core.cost.CostModel`) at each review threshold, and the cheapest."""
    totals = []
    for t in thresholds:
        m = decision_metrics(j, action_at(j, t), cost)
        totals.append(m["total_cost_eur"])
    best = int(np.argmin(totals)) if totals else 0
    return {
        "thresholds": list(thresholds),
        "total_cost_eur": totals,
        "best_threshold": thresholds[best] if totals else None,
        "best_total_cost_eur": totals[best] if totals else None,
    }


def evaluate_model(
    j: Joined, threshold: float, extra_thresholds: Sequence[float], cost: CostModel, k: int = DEFAULT_K
) -> dict[str, Any]:
    """Everything the report says about one model: at its recorded decisions (own threshold),
    at each extra threshold, threshold-free measures, card precision@k per day, per scenario and
    the cost curve."""
    at_own = decision_metrics(j, j.action, cost)
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
        "roc_auc": roc_auc(j.is_fraud, j.score),
        "card_precision_at_k": card_precision_at_k(j.card_id, j.event_time_ms, j.score, j.is_fraud, k),
        "recall_at_fpr": {f"{fpr:g}": recall_at_fpr(j, fpr) for fpr in FIXED_FPRS},
        "at_threshold": at_own,
        "at_thresholds": {f"{t:g}": decision_metrics(j, action_at(j, t), cost) for t in extra_thresholds},
        "per_scenario": per_scenario(j, j.decided_flagged),
        "cost_curve": cost_curve(j, cost),
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
        for key in ("pr_auc", "roc_auc"):
            row[key] = _diff(m[key], ref[key])
        row["card_precision_at_k_mean"] = _diff(
            m["card_precision_at_k"]["mean"], ref["card_precision_at_k"]["mean"]
        )
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
