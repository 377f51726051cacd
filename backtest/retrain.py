"""``make retrain``: train a challenger from a recent window of the topics, backtest it against the
live model on the same held-out range through the live job, and decide what goes live.

Steps:

1. Train the challenger from ``payments.initiated`` and ``payments.labels`` (the analysts'
   verdicts, chargebacks and imported labels alike), with labels as known at ``--until``
   (:mod:`inference_service.training.from_topics`). Rows come from the last ``--window-days``
   before it; every earlier payment is replayed for its stream state only.
2. The held-out range is the challenger's own held-out period: the last 20% of its labelled rows
   by event time, which it was neither fitted nor calibrated on. Both models are backtested on the
   payments of that event-time range, through ``python -m backtest`` (the bounded live job, once
   per model, each with its own private scoring service), selected by offsets because an imported
   history's Kafka timestamps are its import time, not its event time.
3. The decisions are read back and joined with the labels known now; both models are reported side
   by side: business cost (:class:`fraud_core.cost.CostModel`, the one the thresholds minimise),
   average precision, card precision@k per day, precision and recall per action.
4. The challenger becomes the shadow model (``<model-dir>/SHADOW``). It goes live only with
   ``--promote``, or when its cost is at least ``--margin`` below the live model's; with no live
   model it goes live. The comparison is written to ``<model-dir>/comparisons/<challenger>.json``,
   which the console shows.

Exit codes: 0 done (promoted or not); 2 bad arguments; 3 the history cannot train or backtest a
model; 1 a failure while running.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pydantic_settings import CliToggleFlag
from sklearn.metrics import average_precision_score

from backtest import replay as backtest_replay
from backtest.cli import run as run_backtest
from backtest.evaluate import card_precision_at_k
from backtest.exceptions import BadInputError
from backtest.models import ModelInfo
from backtest.settings import DEFAULT_WARMUP_MINUTES, BacktestSettings
from console.comparisons import comparison_path
from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.cost import CostModel
from fraud_core.entities import DEFAULT_LABEL_DELAY_MS
from fraud_core.exceptions import FraudPipelineError
from fraud_core.kafka.readers import read_range
from fraud_core.kafka_io import consumer, decoder, partition_bounds
from fraud_core.model_folder import (
    LIVE_POINTER,
    SHADOW_POINTER,
    UnreadableCard,
    read_card,
    read_pointer,
    write_pointer,
)
from fraud_core.reference import to_eur
from fraud_core.rules import APPROVE, BLOCK, REVIEW
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import INITIATED, LABELS
from fraud_core.transaction import Transaction
from inference_service.exceptions import TrainingError
from inference_service.training.from_topics import (
    TopicHistory,
    iso,
    labels_as_of,
    parse_until,
    train_from_topics,
)
from inference_service.training.train import TrainConfig

log = logging.getLogger("retrain")

DAY_MS = 86_400_000
EXIT_FAILURE, EXIT_BAD_INPUT = 1, 3


class RetrainSettings(ConnectionSettings):
    __doc__ = (
        "Train a challenger from the last --window-days of payments.initiated and payments.labels up to "
        "--until (labels as known then), backtest it and the live model on the challenger's held-out "
        "range through the live job (python -m backtest), print both side by side, make the challenger "
        "the shadow model, and promote it only with --promote or when its business cost is at least "
        f"--margin below the live model's. Exit codes: 0 ok, 2 bad arguments, 3 bad input, 1 failure. {ENV_NOTE}"
    )
    model_config = cli_config(
        "python -m backtest.retrain",
        {
            "RETRAIN_WINDOW_DAYS": "window-days",
            "RETRAIN_UNTIL": "until",
            "RETRAIN_MARGIN": "margin",
            "RETRAIN_PROMOTE": "promote",
            "RETRAIN_K": "k",
            "RETRAIN_TOPIC": "topic",
            "RETRAIN_LABELS_TOPIC": "labels-topic",
            "RETRAIN_SEED": "seed",
            "RETRAIN_ENRICHMENT": "enrichment",
            "RETRAIN_WARMUP_MINUTES": "warmup-minutes",
            "LABEL_DELAY_MS": "label-delay-ms",
            "MODEL_DIR": "model-dir",
            "BACKTEST_OUT": "out",
        },
    )

    RETRAIN_WINDOW_DAYS: float = Field(30.0, gt=0, description="Days of history the challenger trains on.")
    RETRAIN_UNTIL: str | None = Field(
        None, description="End of the window, ISO-8601 (UTC when no offset is given); default now."
    )
    RETRAIN_MARGIN: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Promote when the challenger's cost is at most (1 - margin) x the live model's.",
    )
    RETRAIN_PROMOTE: CliToggleFlag[bool] = Field(
        False, description="Promote the challenger whatever the result."
    )
    RETRAIN_K: int = Field(100, ge=1, description="Daily review capacity k of card precision@k.")
    RETRAIN_TOPIC: str = Field(INITIATED, min_length=1, description="Payments topic.")
    RETRAIN_LABELS_TOPIC: str = Field(LABELS, min_length=1, description="Labels topic.")
    RETRAIN_SEED: int = Field(7, description="Model seed.")
    RETRAIN_ENRICHMENT: Literal["none", "snapshot"] = Field(
        "none",
        description="Profiles the backtest's job reads: none (as the challenger was trained: no profile) "
        "or snapshot (today's live profiles).",
    )
    RETRAIN_WARMUP_MINUTES: float = Field(
        DEFAULT_WARMUP_MINUTES,
        ge=0,
        description="Backtest warm-up before the held-out range, in Kafka (send) time.",
    )
    LABEL_DELAY_MS: int = Field(DEFAULT_LABEL_DELAY_MS, ge=0, description="The job's LABEL_DELAY_MS.")
    MODEL_DIR: Path = Field(Path("models"), description="Model registry folder.")
    BACKTEST_OUT: Path = Field(Path("backtests"), description="Backtest report folder root.")


def action_metrics(actions: Sequence[str], fraud: Sequence[bool]) -> dict[str, dict[str, Any]]:
    """Precision and recall of REVIEW, BLOCK and flagged (either), over labelled payments."""
    act = np.asarray(actions, dtype=str)
    is_fraud = np.asarray(fraud, dtype=bool)
    total = int(is_fraud.sum())
    out: dict[str, dict[str, Any]] = {}
    for name, mask in (("REVIEW", act == REVIEW), ("BLOCK", act == BLOCK), ("flagged", act != APPROVE)):
        hits = int((mask & is_fraud).sum())
        out[name] = {
            "payments": int(mask.sum()),
            "frauds": hits,
            "precision": hits / int(mask.sum()) if mask.any() else None,
            "recall": hits / total if total else None,
        }
    return out


def model_metrics(
    decisions: Iterable[Mapping[str, Any]],
    payments: Mapping[str, Transaction],
    labels: Mapping[str, bool],
    cost: CostModel,
    k: int,
) -> dict[str, Any]:
    """One model's figures over the held-out payments it decided that have a label (the first
    decision of an event counts; others are at-least-once duplicates)."""
    seen: set[str] = set()
    ids, scores, actions, fraud, amounts, cards, times = [], [], [], [], [], [], []
    decided = unlabelled = 0
    for d in decisions:
        event_id = str(d["event_id"])
        if event_id in seen or event_id not in payments:
            continue
        seen.add(event_id)
        decided += 1
        if event_id not in labels:
            unlabelled += 1
            continue
        txn = payments[event_id]
        ids.append(event_id)
        scores.append(float(d["score"]))
        actions.append(str(d.get("action") or (REVIEW if d["decision"] == "FLAGGED" else APPROVE)))
        fraud.append(labels[event_id])
        amounts.append(to_eur(txn.amount_minor, txn.currency))
        cards.append(txn.card_id)
        times.append(txn.event_time)
    both = any(fraud) and not all(fraud)
    breakdown = cost.breakdown(fraud, amounts, actions) if ids else {}
    return {
        "decided": decided,
        "labelled": len(ids),
        "unlabelled_not_evaluated": unlabelled,
        "frauds": int(sum(fraud)),
        "cost_eur": round(breakdown.get("total_eur", 0.0), 2),
        "cost_breakdown_eur": {key: round(v, 2) for key, v in breakdown.items()},
        "average_precision": float(average_precision_score(fraud, scores)) if both else None,
        "card_precision_at_k": card_precision_at_k(cards, times, scores, fraud, k),
        "actions": action_metrics(actions, fraud),
    }


def decide_promotion(
    live_cost: float | None, challenger_cost: float, margin: float, forced: bool
) -> tuple[bool, str]:
    """Whether the challenger goes live, and the rule that said so, in words."""
    if forced:
        return True, "--promote given: the challenger goes live whatever the comparison"
    if live_cost is None:
        return True, "there is no live model: the challenger goes live"
    bar = live_cost * (1 - margin)
    verdict = "at or below" if challenger_cost <= bar else "above"
    rule = (
        f"promote when the challenger's cost <= (1 - {margin:g}) x the live model's cost: "
        f"{challenger_cost:,.2f} EUR is {verdict} {bar:,.2f} EUR"
    )
    return challenger_cost <= bar, rule


def held_out_offsets(history: TopicHistory, from_ms: int, to_ms: int) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets ``[first, last + 1)`` of the payments with event time in
    ``[from_ms, to_ms]``: the backtest's ``--offsets`` (its ``--from``/``--to`` are Kafka time)."""
    spans: dict[int, list[int]] = {}
    for p in history.payments:
        if from_ms <= p.txn.event_time <= to_ms:
            span = spans.setdefault(p.partition, [p.offset, p.offset])
            span[0], span[1] = min(span[0], p.offset), max(span[1], p.offset)
    return {part: (lo, hi + 1) for part, (lo, hi) in sorted(spans.items())}


def read_decisions(settings: ConnectionSettings, topics: backtest_replay.RunTopics) -> list[dict[str, Any]]:
    """Every decision the backtest's job wrote for one model (its flagged and approved topics)."""
    bounds = partition_bounds(settings.kafka, [topics.flagged, topics.approved])
    records = read_range(
        consumer(settings.kafka, f"retrain-reader-{uuid.uuid4().hex[:8]}"),
        decoder(settings.SCHEMA_REGISTRY_URL),
        bounds,
    )
    return [rec for _t, _p, _o, rec in records if rec is not None]


def side_by_side(comparison: Mapping[str, Any]) -> str:
    """The console table of both models."""
    models = comparison["models"]
    names = list(models)
    rows: list[tuple[str, list[str]]] = []

    def fmt(value: Any, pct: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:.1%}" if pct else f"{value:,.4f}" if isinstance(value, float) else f"{value:,}"

    rows.append(("role", [models[n]["role"] for n in names]))
    rows.append(("cost (EUR)", [f"{models[n]['metrics']['cost_eur']:,.2f}" for n in names]))
    rows.append(("average precision", [fmt(models[n]["metrics"]["average_precision"]) for n in names]))
    k = comparison["k"]
    rows.append(
        (
            f"card precision@{k} (mean/day)",
            [fmt(models[n]["metrics"]["card_precision_at_k"]["mean"], True) for n in names],
        )
    )
    for action in ("REVIEW", "BLOCK", "flagged"):
        for what in ("precision", "recall"):
            rows.append(
                (
                    f"{action} {what}",
                    [fmt(models[n]["metrics"]["actions"][action][what], True) for n in names],
                )
            )
    rows.append(
        (
            "labelled / decided",
            [f"{models[n]['metrics']['labelled']:,} / {models[n]['metrics']['decided']:,}" for n in names],
        )
    )
    width = max(len(r[0]) for r in rows)
    cols = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
    lines = [" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cols, strict=True))]
    lines += [
        label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(vals, cols, strict=True))
        for label, vals in rows
    ]
    return "\n".join(lines)


def retrain(settings: RetrainSettings) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns the comparison written to the model dir."""
    s = settings
    until_ms = parse_until(s.RETRAIN_UNTIL)
    since_ms = until_ms - int(s.RETRAIN_WINDOW_DAYS * DAY_MS)
    live = read_pointer(s.MODEL_DIR, LIVE_POINTER)
    config = TrainConfig(seed=s.RETRAIN_SEED)
    trained = train_from_topics(
        s.kafka,
        s.SCHEMA_REGISTRY_URL,
        s.RETRAIN_TOPIC,
        s.RETRAIN_LABELS_TOPIC,
        until_ms,
        s.MODEL_DIR,
        config,
        promote=False,
        label_delay_ms=s.LABEL_DELAY_MS,
        since_ms=since_ms,
    )
    challenger = trained.card.version
    if trained.card.training_data is None:  # train() always writes it
        raise TrainingError(f"the card of {challenger} has no training_data")
    held = trained.card.training_data.split.held_out
    from_ms, to_ms = held.from_event_time, held.to_event_time
    history = trained.history
    payments = {p.txn.event_id: p.txn for p in history.payments if from_ms <= p.txn.event_time <= to_ms}
    labels_now = {e: lab.label.is_fraud for e, lab in labels_as_of(history.labels, until_ms).items()}
    versions = [v for v in dict.fromkeys([live, challenger]) if v]
    offsets = held_out_offsets(history, from_ms, to_ms)
    run_id = f"retrain-{datetime.now(tz=UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:4]}"
    log.info(
        "backtesting %s on %s .. %s (%d payments)",
        ", ".join(versions),
        iso(from_ms),
        iso(to_ms),
        len(payments),
    )
    report, models = _backtest_both(
        s,
        _backtest_settings(s, run_id, offsets, versions),
        versions,
        live,
        challenger,
        payments,
        labels_now,
        config,
    )
    live_cost = models[live]["metrics"]["cost_eur"] if live and live != challenger else None
    promote, rule = decide_promotion(
        live_cost, models[challenger]["metrics"]["cost_eur"], s.RETRAIN_MARGIN, s.RETRAIN_PROMOTE
    )
    _move_pointers(s.MODEL_DIR, live, challenger, promote)
    comparison = {
        "challenger": challenger,
        "live": live,
        "until": iso(until_ms),
        "window": {"from": iso(since_ms), "to": iso(until_ms), "days": s.RETRAIN_WINDOW_DAYS},
        "held_out": _held_out_section(s.MODEL_DIR, live, (from_ms, to_ms), len(payments), offsets),
        "labels": "as known at --until (the latest label per payment with labelled_at <= until)",
        "k": s.RETRAIN_K,
        "cost_model": config.cost.to_json(),
        "models": models,
        "rule": rule,
        "promoted": promote and live != challenger,
        "shadow": read_pointer(s.MODEL_DIR, SHADOW_POINTER),
        "now_live": read_pointer(s.MODEL_DIR, LIVE_POINTER),
        "backtest_report": str(report),
        "enrichment": s.RETRAIN_ENRICHMENT,
    }
    path = comparison_path(s.MODEL_DIR, challenger)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
    return comparison


def _held_out_section(
    model_dir: Path,
    live: str | None,
    span_ms: tuple[int, int],
    payments: int,
    offsets: Mapping[int, tuple[int, int]],
) -> dict[str, Any]:
    """The comparison's ``held_out``: the period both models are compared on, and whether the live model
    was trained on it (then its figures there flatter it)."""
    from_ms, to_ms = span_ms
    return {
        "from": iso(from_ms),
        "to": iso(to_ms),
        "what": "the challenger's held-out period: the last 20% of its labelled rows by event time, "
        "neither fitted nor calibrated on",
        "payments": payments,
        "offsets": {str(p): list(span) for p, span in offsets.items()},
        "live_trained_on_it": _overlaps(model_dir, live, from_ms, to_ms),
    }


def _backtest_settings(
    s: RetrainSettings, run_id: str, offsets: Mapping[int, tuple[int, int]], versions: Sequence[str]
) -> BacktestSettings:
    """The backtest of the held-out offsets with the live model and the challenger, keeping its topics:
    their decisions are read back here for the comparison."""
    return BacktestSettings(
        KAFKA_BOOTSTRAP_SERVERS=s.KAFKA_BOOTSTRAP_SERVERS,
        SCHEMA_REGISTRY_URL=s.SCHEMA_REGISTRY_URL,
        REDIS_URL=s.REDIS_URL,
        BACKTEST_TOPIC=s.RETRAIN_TOPIC,
        BACKTEST_LABELS_TOPIC=s.RETRAIN_LABELS_TOPIC,
        BACKTEST_OFFSETS=",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in offsets.items()),
        BACKTEST_WARMUP_MINUTES=s.RETRAIN_WARMUP_MINUTES,
        BACKTEST_MODELS=",".join(versions),
        MODEL_DIR=s.MODEL_DIR,
        BACKTEST_ENRICHMENT=s.RETRAIN_ENRICHMENT,
        BACKTEST_OUT=s.BACKTEST_OUT,
        BACKTEST_KEEP_TOPICS=True,  # read back here for the actions, then deleted below
        BACKTEST_RUN_ID=run_id,
    )


def _backtest_both(
    s: RetrainSettings,
    backtest_settings: BacktestSettings,
    versions: Sequence[str],
    live: str | None,
    challenger: str,
    payments: Mapping[str, Transaction],
    labels_now: Mapping[str, bool],
    config: TrainConfig,
) -> tuple[Path, dict[str, Any]]:
    """Run the backtest and score each model's decisions on the labels known now; the run's topics are
    deleted afterwards whatever happened, so a failed retrain leaves nothing behind on the cluster."""
    run_id = backtest_settings.BACKTEST_RUN_ID
    owned: list[str] = []
    try:
        report = run_backtest(backtest_settings)
        models: dict[str, Any] = {}
        for version in versions:
            topics = backtest_replay.RunTopics.named(run_id, ModelInfo(version, 0.0, None).slug)
            owned += topics.all
            decisions = read_decisions(s, topics)
            role = "challenger" if version == challenger else "live"
            if version == live == challenger:
                role = "live (the challenger trained to the same version)"
            models[version] = {
                "role": role,
                "metrics": model_metrics(decisions, payments, labels_now, config.cost, s.RETRAIN_K),
            }
    finally:
        backtest_replay.delete_topics(s.kafka, owned or _all_run_topics(run_id, versions))
    return report, models


def _move_pointers(model_dir: Path, live: str | None, challenger: str, promote: bool) -> None:
    """A new challenger becomes the shadow model; promoted, it becomes live and the shadow is cleared,
    since the shadow would then be the live model itself."""
    if live != challenger:
        write_pointer(model_dir, SHADOW_POINTER, challenger)
    if promote and live != challenger:
        write_pointer(model_dir, LIVE_POINTER, challenger)
        write_pointer(model_dir, SHADOW_POINTER, "")  # the shadow would be the live model itself


def _all_run_topics(run_id: str, versions: Sequence[str]) -> list[str]:
    return [
        t for v in versions for t in backtest_replay.RunTopics.named(run_id, ModelInfo(v, 0.0, None).slug).all
    ]


def _overlaps(model_dir: Path, version: str | None, from_ms: int, to_ms: int) -> bool | None:
    """Whether ``version``'s training or calibration period reaches into ``[from_ms, to_ms]`` (None:
    no live model, or its card does not say)."""
    if version is None:
        return None
    try:
        data = read_card(model_dir, version).training_data
    except (OSError, UnreadableCard):
        return None
    if data is None:
        return None
    split = data.split
    used_to = max(split.train.to_event_time, split.calibration.to_event_time)
    used_from = split.train.from_event_time
    return used_from <= to_ms and used_to >= from_ms


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(RetrainSettings, argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    for noisy in ("fraud_core", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        comparison = retrain(settings)
    except (TrainingError, BadInputError) as exc:
        sys.stderr.write(f"retrain: bad input: {exc}\n")
        return EXIT_BAD_INPUT
    except FraudPipelineError as exc:
        sys.stderr.write(f"retrain: failed: {exc}\n")
        return EXIT_FAILURE
    held = comparison["held_out"]
    out = [
        f"challenger {comparison['challenger']} (window {comparison['window']['from']} .. {comparison['window']['to']})",
        f"held-out range: {held['from']} .. {held['to']}, {held['payments']:,} payments ({held['what']})",
        "",
        side_by_side(comparison),
        "",
        f"rule: {comparison['rule']}",
        f"promoted: {'yes' if comparison['promoted'] else 'no'}; LIVE = {comparison['now_live']}; "
        f"SHADOW = {comparison['shadow'] or 'none'}",
        f"comparison: {comparison_path(settings.MODEL_DIR, comparison['challenger'])} (console: /models)",
        f"backtest report: {comparison['backtest_report']}",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
