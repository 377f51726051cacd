"""Train, calibrate, evaluate and register a fraud model from the transaction simulator.

``python -m inference_service.training --seed 7 --events 320000 --model-dir models`` (`make model`)

1. Replay the simulator's labelled stream in event-time order through the shared feature code
   (:class:`fraud_core.features.VelocityState` per user, the user's seeded profile,
   :func:`fraud_core.features.build_features`): the very computation the stream job runs.
2. Split by time: the earliest 60% of events train, the next 20% calibrate and choose the
   threshold, the latest 20% are held out for the card's metrics.
3. Fit a HistGradientBoostingClassifier, calibrate it with one isotonic regression on the
   calibration period (``CalibratedClassifierCV(FrozenEstimator(...))``: one calibrator, so
   prediction stays a single pass).
4. Choose the two thresholds (review, block) that minimise the business cost on the calibration
   period: every missed fraud costs its amount in EUR (the chargeback), every payment sent to
   review costs a manual review, every legitimate payment blocked costs a false block (a declined
   customer, a call, a reissued card). Blocked fraud and reviewed fraud are caught.
5. Repeat 3-4 without the velocity features (the ablation).
6. Score the held-out stress set (another seed, the simulator's stress variant: users and
   merchants never seen in training, more users without a profile, slower timings within each
   signature's bounds) and decide each event with :func:`fraud_core.decision.decide` and the
   rules file, as the job does: precision and recall per fraud type for the model alone, the
   rules alone and both together, and the ablation on the same set.
7. Bin every feature (training period) and the score (held-out period) into the card's
   ``drift_reference`` (:mod:`fraud_core.drift_reference`), the baseline the drift monitor compares live
   traffic with.
8. Write ``<model-dir>/<version>/`` with ``model.joblib`` and ``card.json``, and point ``LIVE``
   at it unless ``--no-promote``.

Everything is a function of the seed and the data: the version is derived from the data
fingerprint, the seed and the hyperparameters, and the card holds no wall-clock time.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import numpy.typing as npt
import scipy
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fraud_core.cost import CostModel
from fraud_core.decision import ScoreResult, decide, model_action
from fraud_core.drift_reference import reference_section
from fraud_core.entities import StreamFeatures
from fraud_core.feature_catalog import ABLATION_GROUPS, FEATURE_NAMES, names_of
from fraud_core.features import VELOCITY_FEATURES, Profile, build_features, to_row
from fraud_core.labels import Label
from fraud_core.model_card import ModelCard
from fraud_core.model_folder import LIVE_POINTER, save_version, write_pointer
from fraud_core.reference import to_eur
from fraud_core.rules import APPROVE, BLOCK, REVIEW, RuleBook, load_rules, strongest
from fraud_core.transaction import Transaction
from inference_service.exceptions import TrainingError

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
FRAUD_TYPES = ("card_testing", "account_takeover", "merchant_burst", "impossible_travel")


def fraud_types(data: Dataset) -> list[str]:
    """The fraud types reported per type: the four episode types always, then any other in ``data``
    (a labelled history names its own: the simulator's compromised merchants, an import's scenarios)."""
    present = sorted({str(k) for k in np.unique(data.fraud_type)} - {""} - set(FRAUD_TYPES))
    return [*FRAUD_TYPES, *present]


_ROUND = 6
# When the simulator's fraud labels become known: a week after the payment, as chargebacks do.
SIMULATOR_LABEL_DELAY_MS = 7 * 24 * 3600 * 1000


class LabelledEvent(Protocol):
    """What the trainer needs of a simulator event (``fraud_core.simulator.SimEvent``)."""

    @property
    def txn(self) -> Transaction: ...
    @property
    def is_fraud(self) -> bool: ...
    @property
    def fraud_type(self) -> str | None: ...


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters, split and business cost; all of it goes into the version hash and the card."""

    seed: int = 7
    max_iter: int = 100  # prediction cost is linear in the number of trees
    learning_rate: float = 0.15
    max_depth: int = 8
    max_leaf_nodes: int = 31
    l2_regularization: float = 1.0
    train_fraction: float = 0.6
    calibration_fraction: float = 0.2
    # The business cost the thresholds minimise; the backtest reports the same one.
    cost: CostModel = field(default_factory=CostModel)
    # The review queue's floor: at least this share of the payments sent to REVIEW (on the
    # calibration set) are fraud. Reviews are cheap next to a missed fraud, so the cheapest pair
    # alone would fill the queue with payments that are fraud one time in seven.
    min_review_precision: float = 0.25


@dataclass(frozen=True)
class Dataset:
    """The replayed stream: one row per event, in event-time order."""

    x: FloatArray
    y: npt.NDArray[np.int8]
    fraud_type: npt.NDArray[np.str_]
    amount_eur: FloatArray
    event_time: npt.NDArray[np.int64]

    def take(self, mask: BoolArray) -> Dataset:
        return Dataset(
            self.x[mask], self.y[mask], self.fraud_type[mask], self.amount_eur[mask], self.event_time[mask]
        )

    def fingerprint(self) -> str:
        """SHA-256 of every row, label, scenario and timestamp: the identity of the training data."""
        h = hashlib.sha256()
        for arr in (self.x, self.y, self.amount_eur, self.event_time):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\x1f".join(self.fraud_type.tolist()).encode())
        return h.hexdigest()


def replay(
    events: Iterable[LabelledEvent],
    profiles: Mapping[str, Profile],
    label_delay_ms: int = SIMULATOR_LABEL_DELAY_MS,
) -> Dataset:
    """Compute every event's features exactly as the stream job does, in event-time order.

    Raises:
        TrainingError: when the events are not in non-decreasing event-time order or are empty.
    """
    return replay_with_transactions(events, profiles, label_delay_ms)[0]


def replay_with_transactions(
    events: Iterable[LabelledEvent],
    profiles: Mapping[str, Profile],
    label_delay_ms: int = SIMULATOR_LABEL_DELAY_MS,
) -> tuple[Dataset, list[Transaction]]:
    """:func:`replay`, plus the transactions themselves (the rules read payment fields).

    Each event's own label becomes known at its ``labelled_at`` when the event has one (the
    simulator's: days late, some never), else ``label_delay_ms`` after its event time: the
    label-driven features of a later payment see it only from then on, as the job sees labels on
    ``payments.labels``. The training target is the event's ground truth either way.
    """
    txns: list[Transaction] = []
    engine = StreamFeatures()
    pending: list[tuple[int, int, Label]] = []
    rows: list[list[float]] = []
    labels: list[int] = []
    kinds: list[str] = []
    amounts: list[float] = []
    times: list[int] = []
    last = 0
    for ev in events:
        txn = ev.txn
        if txn.event_time < last:
            raise TrainingError(
                f"event {txn.event_id} at {txn.event_time} is earlier than {last}: not in order"
            )
        last = txn.event_time
        while pending and pending[0][0] <= last:
            engine.label(heapq.heappop(pending)[2])
        txns.append(txn)
        stream = engine.observe(txn)
        rows.append(to_row(build_features(txn, stream, profiles.get(txn.user_id))))
        # The simulator's own delay when it has one (days late, some never), else the fixed one.
        known_at = getattr(ev, "labelled_at", last + label_delay_ms)
        if ev.is_fraud and known_at is not None:
            label = Label(txn.event_id, True, known_at, txn.card_id, txn.merchant_id, txn.event_time)
            heapq.heappush(pending, (label.labelled_at, len(rows), label))
        labels.append(int(ev.is_fraud))
        kinds.append(ev.fraud_type or "" if ev.is_fraud else "")
        amounts.append(to_eur(txn.amount_minor, txn.currency))
        times.append(txn.event_time)
    if not rows:
        raise TrainingError("the simulator produced no events")
    data = Dataset(
        x=np.asarray(rows, dtype=np.float64),
        y=np.asarray(labels, dtype=np.int8),
        fraud_type=np.asarray(kinds, dtype=np.str_),
        amount_eur=np.asarray(amounts, dtype=np.float64),
        event_time=np.asarray(times, dtype=np.int64),
    )
    return data, txns


@dataclass(frozen=True)
class StressSet:
    """The held-out stress set: its replayed features, its transactions, how it was generated."""

    data: Dataset
    txns: list[Transaction]
    source: Mapping[str, Any]


def warm_replay(
    events: Iterable[LabelledEvent], profiles: Mapping[str, Profile], warmup: int
) -> tuple[Dataset, list[Transaction]]:
    """:func:`replay_with_transactions` of ``events``, keeping only the rows after the first ``warmup``.

    The features of the kept rows have seen the warm-up: windows of days and the late labels'
    rates (which lag by the label delay) start full, as they are in a pipeline that has been
    running, instead of empty. A set scored from a cold start measures the first weeks of a new
    deployment, when a compromised merchant cannot be told from its label rate yet.
    """
    if warmup < 0:
        raise TrainingError(f"the warm-up must be >= 0 events, got {warmup}")
    data, txns = replay_with_transactions(events, profiles)
    if warmup >= len(txns):
        raise TrainingError(f"the warm-up ({warmup} events) leaves none of the {len(txns)} events to score")
    kept = np.arange(len(txns)) >= warmup
    return data.take(kept), txns[warmup:]


def stress_actions(
    scores: FloatArray,
    stress: StressSet,
    threshold: float,
    block: float | None,
    rules: RuleBook,
    version: str,
) -> dict[str, list[str]]:
    """The action of every stress event by the model alone, the ``always`` rules alone, and both
    together through :func:`fraud_core.decision.decide` (the job's code; no blocklist: a card
    blocked earlier is a decline of its own, counted apart in the demo)."""
    out: dict[str, list[str]] = {"model": [], "rules": [], "both": []}
    for txn, row, score in zip(stress.txns, stress.data.x.tolist(), scores.tolist(), strict=True):
        features = dict(zip(FEATURE_NAMES, row, strict=True))
        result = ScoreResult(score, threshold, version, block_threshold=block)
        out["model"].append(model_action(result))
        out["rules"].append(strongest([r.action for r in rules.fired(txn, features, model_down=False)]))
        out["both"].append(decide(txn, features, result, False, False, txn.event_time, rules)["action"])
    return out


def action_report(actions: Sequence[str], data: Dataset) -> dict[str, Any]:
    """Precision and recall of REVIEW, BLOCK and flagged (REVIEW or BLOCK), overall and per fraud
    type (a type's precision: its frauds among its frauds plus every legitimate payment flagged)."""
    act = np.asarray(actions)
    fraud = data.y == 1
    masks = {"REVIEW": act == REVIEW, "BLOCK": act == BLOCK, "flagged": act != APPROVE}
    out: dict[str, Any] = {}
    for name, mask in masks.items():
        hits = int((mask & fraud).sum())
        out[name] = {
            "payments": int(mask.sum()),
            "frauds": hits,
            "precision": hits / int(mask.sum()) if mask.any() else None,
            "recall": hits / max(int(fraud.sum()), 1),
        }
    flagged = masks["flagged"]
    false_flags = int((flagged & ~fraud).sum())
    per: dict[str, Any] = {}
    for kind in fraud_types(data):
        mine = data.fraud_type == kind
        hits = int((flagged & mine).sum())
        per[kind] = {
            "frauds": int(mine.sum()),
            "recall": hits / int(mine.sum()) if mine.any() else None,
            "block_recall": int((masks["BLOCK"] & mine).sum()) / int(mine.sum()) if mine.any() else None,
            "precision": hits / (hits + false_flags) if hits + false_flags else None,
        }
    out["per_fraud_type"] = per
    rounded: dict[str, Any] = _rounded(out)
    return rounded


def split_by_time(data: Dataset, config: TrainConfig) -> tuple[Dataset, Dataset, Dataset]:
    """Train on the earliest events, calibrate on the next, hold out the latest."""
    n = len(data.y)
    t_cal = data.event_time[min(n - 1, int(n * config.train_fraction))]
    t_test = data.event_time[min(n - 1, int(n * (config.train_fraction + config.calibration_fraction)))]
    train = data.take(data.event_time < t_cal)
    cal = data.take((data.event_time >= t_cal) & (data.event_time < t_test))
    test = data.take(data.event_time >= t_test)
    for name, part in (("training", train), ("calibration", cal), ("held-out", test)):
        if part.y.sum() == 0 or part.y.sum() == len(part.y):
            raise TrainingError(
                f"the {name} period has {int(part.y.sum())} frauds in {len(part.y)} events; "
                "generate more events"
            )
    return train, cal, test


def fit(
    x_train: FloatArray,
    y_train: npt.NDArray[np.int8],
    x_cal: FloatArray,
    y_cal: npt.NDArray[np.int8],
    config: TrainConfig,
) -> CalibratedClassifierCV:
    """Gradient-boosted trees, then one isotonic calibrator fitted on the calibration period."""
    hgb = HistGradientBoostingClassifier(
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        max_depth=config.max_depth,
        max_leaf_nodes=config.max_leaf_nodes,
        l2_regularization=config.l2_regularization,
        early_stopping=False,
        random_state=config.seed,
    ).fit(x_train, y_train)
    calibrated = CalibratedClassifierCV(FrozenEstimator(hgb), method="isotonic")
    return calibrated.fit(x_cal, y_cal)


def model_actions(
    scores: FloatArray, review_threshold: float, block_threshold: float | None
) -> npt.NDArray[np.str_]:
    """The model's own action of every score (:func:`fraud_core.decision.model_action`, vectorised)."""
    block = scores >= block_threshold if block_threshold is not None else np.zeros(len(scores), bool)
    return np.where(block, BLOCK, np.where(scores >= review_threshold, REVIEW, APPROVE))


def business_cost(
    scores: FloatArray, data: Dataset, threshold: float, block_threshold: float | None, cost: CostModel
) -> dict[str, float]:
    """The business cost (:class:`fraud_core.cost.CostModel`) of the model's own actions, in EUR."""
    return cost.breakdown(data.y == 1, data.amount_eur, model_actions(scores, threshold, block_threshold))


MAX_CANDIDATES = 800


def choose_thresholds(
    scores: FloatArray, data: Dataset, cost: CostModel, min_review_precision: float = 0.0
) -> tuple[float, float | None]:
    """The (review, block) thresholds with the lowest business cost (``cost``) on ``data``, among
    the pairs whose REVIEW band holds at least ``min_review_precision`` frauds per payment (a band
    with no payment qualifies: nothing is sent to review). A band meets the floor by starting higher
    or by reaching higher (fewer blocks, more frauds reviewed), whichever costs less.

    Every payment scored below the review threshold is approved, between the two reviewed, at or
    above the block threshold blocked; each costs what ``cost`` prices that action at. Candidates
    are midpoints between consecutive distinct scores (thinned to :data:`MAX_CANDIDATES` quantiles),
    plus "never block" (block threshold None). Ties go to the higher thresholds (fewer reviews,
    fewer blocks).

    Raises:
        TrainingError: every score is the same.
    """
    distinct = np.unique(scores)
    if distinct.size < 2:
        raise TrainingError("the calibrated model gives every calibration event the same score")
    candidates = (distinct[:-1] + distinct[1:]) / 2
    if candidates.size > MAX_CANDIDATES:
        candidates = np.unique(np.quantile(candidates, np.linspace(0, 1, MAX_CANDIDATES)))
    order = np.argsort(scores)
    sorted_scores = scores[order]
    fraud, amount = data.y[order] == 1, data.amount_eur[order]
    n = len(scores)
    # Cumulative cost of the first i payments (by score) under each action: the cost of a
    # (review, block) pair is then three differences.
    below = {
        a: np.concatenate([[0.0], np.cumsum(cost.cost(fraud, amount, np.full(n, a)))])
        for a in (APPROVE, REVIEW, BLOCK)
    }
    idx = np.searchsorted(sorted_scores, candidates, side="left")  # events below each candidate
    # Block candidates: every candidate, then "never" (all events below it).
    idx_b = np.concatenate([idx, [n]])
    total = (
        below[APPROVE][idx][:, None]
        + (below[REVIEW][idx_b][None, :] - below[REVIEW][idx][:, None])
        + (below[BLOCK][-1] - below[BLOCK][idx_b])[None, :]
    )
    total[idx_b[None, :] < idx[:, None]] = np.inf  # block threshold below review threshold
    if min_review_precision > 0:
        frauds_below = np.concatenate([[0], np.cumsum(fraud)])
        reviewed = idx_b[None, :] - idx[:, None]
        caught = frauds_below[idx_b][None, :] - frauds_below[idx][:, None]
        total[(reviewed > 0) & (caught < min_review_precision * reviewed)] = np.inf
    best = np.argwhere(total == total.min())
    r, b = max(best.tolist(), key=lambda rb: (rb[0], rb[1]))
    block = None if b == len(candidates) else float(candidates[b])
    return float(candidates[r]), block


def action_metrics(
    scores: FloatArray, data: Dataset, review_threshold: float, block_threshold: float | None
) -> dict[str, Any]:
    """Per action of the model alone: payments, frauds among them, precision; recall of BLOCK and
    of REVIEW-or-BLOCK (flagged) over all frauds."""
    fraud = data.y == 1
    block = scores >= block_threshold if block_threshold is not None else np.zeros(len(scores), bool)
    review = (scores >= review_threshold) & ~block
    out: dict[str, Any] = {}
    for name, mask in (("REVIEW", review), ("BLOCK", block), ("flagged", review | block)):
        hits = int((mask & fraud).sum())
        out[name] = {
            "payments": int(mask.sum()),
            "frauds": hits,
            "precision": hits / int(mask.sum()) if mask.any() else None,
            "recall": hits / max(int(fraud.sum()), 1),
        }
    return out


def _recall_at_fpr(y: npt.NDArray[np.int8], scores: FloatArray, max_fpr: float) -> float:
    fpr, tpr, _ = roc_curve(y, scores)
    return float(tpr[fpr <= max_fpr].max())


def evaluate(
    scores: FloatArray, data: Dataset, threshold: float, cost: CostModel, block_threshold: float | None = None
) -> dict[str, Any]:
    """Held-out metrics: overall and per fraud scenario (each scenario's frauds against all legit)."""
    flagged = scores >= threshold
    fraud = data.y == 1
    tp = int((flagged & fraud).sum())
    out: dict[str, Any] = {
        "events": len(scores),
        "frauds": int(fraud.sum()),
        "pr_auc": float(average_precision_score(data.y, scores)),
        "roc_auc": float(roc_auc_score(data.y, scores)),
        "precision_at_threshold": tp / max(int(flagged.sum()), 1),
        "recall_at_threshold": tp / max(int(fraud.sum()), 1),
        "flag_rate": float(flagged.mean()),
        "recall_at_1pct_fpr": _recall_at_fpr(data.y, scores, 0.01),
        "cost_at_threshold": business_cost(scores, data, threshold, block_threshold, cost),
        "cost_flag_nothing_eur": cost.breakdown(fraud, data.amount_eur, np.full(len(scores), APPROVE))[
            "total_eur"
        ],
    }
    per: dict[str, Any] = {}
    legit = ~fraud
    for kind in fraud_types(data):
        mine = data.fraud_type == kind
        if not mine.any():
            per[kind] = {"frauds": 0}
            continue
        sub = mine | legit
        per[kind] = {
            "frauds": int(mine.sum()),
            "recall_at_threshold": float(flagged[mine].mean()),
            "recall_at_1pct_fpr": _recall_at_fpr(data.y[sub], scores[sub], 0.01),
            "pr_auc": float(average_precision_score(data.y[sub], scores[sub])),
            "missed_fraud_eur": float(data.amount_eur[mine & ~flagged].sum()),
        }
    out["per_scenario"] = per
    rounded: dict[str, Any] = _rounded(out)
    return rounded


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, _ROUND)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _variant(
    train: Dataset, cal: Dataset, test: Dataset, columns: Sequence[int], config: TrainConfig
) -> tuple[CalibratedClassifierCV, float, float | None, dict[str, Any]]:
    """Fit on ``columns``, choose both thresholds on ``cal``, evaluate on ``test``."""
    model = fit(train.x[:, columns], train.y, cal.x[:, columns], cal.y, config)
    cal_scores = model.predict_proba(cal.x[:, columns])[:, 1]
    threshold, block = choose_thresholds(cal_scores, cal, config.cost, config.min_review_precision)
    test_scores = model.predict_proba(test.x[:, columns])[:, 1]
    metrics = evaluate(test_scores, test, threshold, config.cost, block)
    metrics["actions"] = _rounded(action_metrics(test_scores, test, threshold, block))
    return model, threshold, block, metrics


def _period(part: Dataset) -> dict[str, Any]:
    return {
        "events": len(part.y),
        "frauds": int(part.y.sum()),
        "from_event_time": int(part.event_time.min()),
        "to_event_time": int(part.event_time.max()),
    }


def _stress_section(
    model: CalibratedClassifierCV,
    ablation: CalibratedClassifierCV,
    kept: Sequence[int],
    thresholds: tuple[float, float | None],
    ab_thresholds: tuple[float, float | None],
    stress: StressSet,
    rules: RuleBook,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The card's stress-set figures (model, rules, both) and the ablation's on the same set."""
    data = stress.data
    scores = model.predict_proba(data.x)[:, 1]
    by_source = stress_actions(scores, stress, *thresholds, rules, "candidate")
    section: dict[str, Any] = {
        "source": dict(stress.source),
        "events": len(data.y),
        "frauds": int(data.y.sum()),
        "rules_version": rules.version,
        "pr_auc": round(float(average_precision_score(data.y, scores)), _ROUND),
        **{name: action_report(actions, data) for name, actions in by_source.items()},
    }
    ab_scores = ablation.predict_proba(data.x[:, kept])[:, 1]
    ab_actions = stress_actions(ab_scores, stress, *ab_thresholds, rules, "ablation")
    ab_section: dict[str, Any] = {
        "pr_auc": round(float(average_precision_score(data.y, ab_scores)), _ROUND),
        "model": action_report(ab_actions["model"], data),
        "both": action_report(ab_actions["both"], data),
    }
    return section, ab_section


def train(
    data: Dataset,
    config: TrainConfig,
    source: Mapping[str, Any],
    stress: StressSet | None = None,
    rules: RuleBook | None = None,
) -> tuple[CalibratedClassifierCV, ModelCard]:
    """Fit the model and its ablation on ``data``; return the estimator and its model card.

    Args:
        data: the replayed stream (:func:`replay`).
        config: hyperparameters, split and business cost.
        source: how the data was generated (simulator settings), copied into the card.
        stress: the held-out stress set; the card reports it under ``metrics.stress``.
        rules: the rules decided with on the stress set (default: the rules file).
    """
    rules = rules or load_rules()
    train_part, cal, test = split_by_time(data, config)
    all_columns = list(range(len(FEATURE_NAMES)))
    model, threshold, block_threshold, held_out = _variant(train_part, cal, test, all_columns, config)
    kept = [i for i, n in enumerate(FEATURE_NAMES) if n not in VELOCITY_FEATURES]
    ab_model, ab_threshold, ab_block, ab_held_out = _variant(train_part, cal, test, kept, config)
    metrics: dict[str, Any] = {"held_out": held_out}
    ablation_stress: dict[str, Any] | None = None
    if stress is not None:
        metrics["stress"], ablation_stress = _stress_section(
            model, ab_model, kept, (threshold, block_threshold), (ab_threshold, ab_block), stress, rules
        )
    fingerprint = data.fingerprint()
    libraries = _library_versions()
    card: dict[str, Any] = {
        "version": _model_version(fingerprint, config, libraries),
        "model_type": "HistGradientBoostingClassifier + one isotonic calibrator (CalibratedClassifierCV)",
        "features": list(FEATURE_NAMES),
        "threshold": round(threshold, 9),
        "block_threshold": None if block_threshold is None else round(block_threshold, 9),
        "threshold_rationale": _threshold_rationale(config.cost, config.min_review_precision),
        "business_cost": {
            "missed_fraud": "amount_eur of the payment, at least min_missed_fraud_eur",
            "min_missed_fraud_eur": config.cost.min_missed_fraud_eur,
            "review_eur_per_flag": config.cost.review_cost_eur,
            "false_block_eur": config.cost.false_block_cost_eur,
            "min_review_precision": config.min_review_precision,
            "defined_in": "fraud_core.cost.CostModel (the backtest reports the same cost)",
        },
        "training_data": {
            "fingerprint_sha256": fingerprint,
            "source": dict(source),
            "events": len(data.y),
            "fraud_rate": round(float(data.y.mean()), _ROUND),
            "split": {"train": _period(train_part), "calibration": _period(cal), "held_out": _period(test)},
        },
        "hyperparameters": asdict(config),
        "libraries": libraries,
        "reference_values": {
            n: float(v) for n, v in zip(FEATURE_NAMES, np.median(train_part.x, axis=0), strict=True)
        },
        "drift_reference": reference_section(
            {n: train_part.x[:, i] for i, n in enumerate(FEATURE_NAMES)},
            model.predict_proba(test.x)[:, 1],
            feature_source="training period (the rows the model was fitted on)",
            score_source="held-out period (scores on rows the model was neither fitted nor calibrated on, "
            "as live traffic is)",
        ),
        "metrics": metrics,
        "ablation": _velocity_ablation_section(
            ab_threshold, held_out, ab_held_out, metrics.get("stress"), ablation_stress
        ),
    }
    card["ablation_groups"] = _group_ablation(train_part, cal, test, config, stress, rules)
    return model, ModelCard.model_validate(card)


def _library_versions() -> dict[str, str]:
    """The versions that change what a fit produces: part of the model's identity, so an upgrade is a new
    version rather than a silent change under the same name."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


def _model_version(fingerprint: str, config: TrainConfig, libraries: Mapping[str, str]) -> str:
    """A version named by its inputs (data, hyperparameters, libraries), so the same training run twice
    gives the same name and a different one never reuses it."""
    identity = json.dumps(
        {"data": fingerprint, "config": asdict(config), "libraries": libraries}, sort_keys=True
    )
    return "hgb-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def _threshold_rationale(cost: CostModel, min_review_precision: float) -> str:
    """The card explains its thresholds in words, with the costs they were chosen under, for a reviewer
    who reads the card and not the code."""
    return (
        f"Both thresholds together minimise the business cost on the calibration period (the 20% "
        f"after the training period; the held-out metrics below are on the last 20%): each missed "
        f"fraud costs its amount in EUR (chargeback), at least {cost.min_missed_fraud_eur:g} EUR "
        f"(a card-testing probe that passes validates the card for larger fraud), each payment sent to REVIEW costs "
        f"{cost.review_cost_eur:g} EUR of manual review, each legitimate payment BLOCKed costs "
        f"{cost.false_block_cost_eur:g} EUR (declined customer, call, card reissue); reviewed and "
        f"blocked frauds count as caught. Only pairs whose REVIEW band holds at least "
        f"{min_review_precision:.0%} frauds on that period qualify (the review queue's floor). "
        f"The model's action is BLOCK at score >= block_threshold "
        f"(null: never on the score alone), REVIEW at score >= threshold, else APPROVE; rules "
        f"(fraud_core/rules) may raise it. decision is FLAGGED for REVIEW and BLOCK."
    )


def _velocity_ablation_section(
    ab_threshold: float,
    held_out: Mapping[str, Any],
    ab_held_out: Mapping[str, Any],
    stress: Mapping[str, Any] | None,
    ab_stress: dict[str, Any] | None,
) -> dict[str, Any]:
    """The card's ``ablation``: the model without the velocity features, and what they add, held out and
    (when there is a stress set) on it, since velocity is the reason the stream job exists."""
    section: dict[str, Any] = {
        "without": list(VELOCITY_FEATURES),
        "threshold": round(ab_threshold, 9),
        "held_out": ab_held_out,
        "velocity_adds": _rounded(
            {
                "pr_auc": held_out["pr_auc"] - ab_held_out["pr_auc"],
                "recall_at_1pct_fpr": held_out["recall_at_1pct_fpr"] - ab_held_out["recall_at_1pct_fpr"],
                "recall_at_threshold": held_out["recall_at_threshold"] - ab_held_out["recall_at_threshold"],
            }
        ),
    }
    if stress is not None and ab_stress is not None:
        section["stress"] = ab_stress
        section["velocity_adds_on_stress"] = _rounded(
            {
                "pr_auc": stress["pr_auc"] - ab_stress["pr_auc"],
                "model_flagged_recall": stress["model"]["flagged"]["recall"]
                - ab_stress["model"]["flagged"]["recall"],
                "model_flagged_precision": (stress["model"]["flagged"]["precision"] or 0.0)
                - (ab_stress["model"]["flagged"]["precision"] or 0.0),
            }
        )
    return section


ABLATION_MAX_ROWS = 150_000


def _group_ablation(
    train_part: Dataset,
    cal: Dataset,
    test: Dataset,
    config: TrainConfig,
    stress: StressSet | None,
    rules: RuleBook,
) -> dict[str, Any]:
    """What each feature group adds: the model refitted without it (thresholds chosen again on the
    calibration period), on the held-out period and on the stress set.

    Each refit uses at most :data:`ABLATION_MAX_ROWS` training rows (a fixed-seed sample, in time
    order), so five refits stay a bounded share of training a large history; the card says so.
    """
    if len(train_part.y) > ABLATION_MAX_ROWS:
        rng = np.random.default_rng(config.seed)
        keep = np.zeros(len(train_part.y), dtype=bool)
        keep[rng.choice(len(train_part.y), ABLATION_MAX_ROWS, replace=False)] = True
        train_part = train_part.take(keep)
    out: dict[str, Any] = {}
    for group in ABLATION_GROUPS:
        dropped = set(names_of(group))
        kept = [i for i, n in enumerate(FEATURE_NAMES) if n not in dropped]
        model, threshold, block, held_out = _variant(train_part, cal, test, kept, config)
        entry: dict[str, Any] = {
            "without": sorted(dropped),
            "training_rows": len(train_part.y),
            "held_out_pr_auc": held_out["pr_auc"],
            "held_out_recall_at_threshold": held_out["recall_at_threshold"],
        }
        if stress is not None:
            scores = model.predict_proba(stress.data.x[:, kept])[:, 1]
            actions = stress_actions(scores, stress, threshold, block, rules, "ablation")
            report = action_report(actions["model"], stress.data)
            entry["stress_pr_auc"] = round(float(average_precision_score(stress.data.y, scores)), _ROUND)
            entry["stress_model_flagged"] = report["flagged"]
        out[group] = entry
    return out


def train_and_register(
    events: Iterable[LabelledEvent],
    profiles: Mapping[str, Profile],
    config: TrainConfig,
    model_dir: Path,
    source: Mapping[str, Any],
    promote: bool = True,
    stress: StressSet | None = None,
) -> ModelCard:
    """Replay, train, write ``<model_dir>/<version>/``, point LIVE at it if ``promote``; return the card."""
    data = replay(events, profiles)
    log.info("replayed stream", extra={"events": len(data.y), "frauds": int(data.y.sum())})
    model, card = train(data, config, source, stress)
    save_version(model_dir, model, card)
    if promote:
        write_pointer(model_dir, LIVE_POINTER, card.version)
    return card
