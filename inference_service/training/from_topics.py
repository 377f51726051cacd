"""Train from the topics' history up to a time T, with labels as they were known at T.

``make model ARGS="--from-topics --until 2026-02-01T00:00:00Z"``

A fraud team's history arrives on ``payments.initiated`` and ``payments.labels`` (``make import``,
or months of live traffic with analyst verdicts and chargebacks). Training from it must not see
the future, or the model learns from labels it could not have had at T and its held-out figures
flatter it. So:

1. Every partition of both topics is read from its low to its high watermark; payments are
   decoded by the job's own decode and validation (:class:`fraud_core.scoring_step.Intake`), so a
   payment the job would dead-letter is not trained on either (counted by reason in the card).
2. Payments with ``event_time <= T`` are kept; labels with ``labelled_at <= T`` are kept. The
   label of a payment is the latest one with ``labelled_at <= T`` (:func:`labels_as_of`): a
   verdict an analyst reversed before T counts as reversed, one reversed after T does not.
3. Every kept payment, labelled or not, is replayed in event-time order through
   :func:`fraud_core.entities.replay` with the kept labels, as the job's keyed state sees them:
   an unlabelled payment still moves the user's velocity and the merchant's and card's counts.
4. A payment whose label is not known at T is left out of the training rows (:func:`labelled_rows`):
   it is not a negative, since most of them are recent and fraud is confirmed late. The card says
   how many were left out.
5. Profiles: imported history has none in Redis, so every row is built with ``profile=None``
   (what the job does for a user without a profile); the card says so.
6. Then :func:`inference_service.training.train.train`: the same time split, fit and cost-based
   thresholds as the simulator's training. The card's ``training_data.source`` names the topics,
   the offset ranges read, the event-time range, T, the label counts and the label delay.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import schemas
from fraud_core.connections import KafkaConnection
from fraud_core.entities import DEFAULT_LABEL_DELAY_MS, StreamFeatures, replay
from fraud_core.exceptions import DecodeError, FraudPipelineError, ReadTimeout, ValidationError
from fraud_core.features import build_features, to_row
from fraud_core.kafka.readers import Bounds, read_range
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.kafka_io import consumer, partition_bounds
from fraud_core.labels import Label, decode_label
from fraud_core.model_card import ModelCard
from fraud_core.model_folder import LIVE_POINTER, save_version, write_pointer
from fraud_core.reference import to_eur
from fraud_core.registry import RegistryClient
from fraud_core.scoring_step import Intake
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import DLQ
from fraud_core.transaction import Transaction
from inference_service.exceptions import TrainingError
from inference_service.training.settings import TrainCli
from inference_service.training.train import Dataset, TrainConfig, train

log = logging.getLogger(__name__)

PROFILES_NOTE = (
    "none: rows are built with profile=None (the job's features for a user without a profile); imported "
    "history brings no profiles and Redis holds today's, not those as of each payment"
)
UNKNOWN_LABEL_POLICY = (
    "left out of the training rows (not counted as legitimate); they still update the replayed stream "
    "state (velocity, merchant and card features) of the payments after them"
)


@dataclass(frozen=True, slots=True)
class TopicLabel:
    """One decoded label record: what the features learn from, plus its fraud type and source."""

    label: Label
    fraud_type: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Positioned:
    """A payment and where it was read: (partition, offset) orders ties in event time."""

    txn: Transaction
    partition: int
    offset: int


@dataclass
class TopicHistory:
    """What was read from the topics, already cut at T (see the module docstring)."""

    until_ms: int
    payments: list[Positioned]
    labels: list[TopicLabel]
    offsets: dict[str, dict[int, list[int]]]
    payments_after_t: int = 0
    labels_after_t: int = 0
    rejected_payments: Counter[str] = field(default_factory=Counter)
    rejected_labels: Counter[str] = field(default_factory=Counter)
    read_s: float = 0.0


def parse_until(text: str | None, now_ms: int | None = None) -> int:
    """T as epoch ms: ISO-8601 (``Z`` or an offset; UTC when none is given), or now when None.

    Raises:
        TrainingError: naming the value when it is not ISO-8601.
    """
    if text is None:
        return now_ms if now_ms is not None else time.time_ns() // 1_000_000
    try:
        when = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError as exc:
        raise TrainingError(f"--until {text!r} is not an ISO-8601 time (e.g. 2026-02-01T00:00:00Z)") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def labels_as_of(labels: Iterable[TopicLabel], until_ms: int) -> dict[str, TopicLabel]:
    """The label of each payment as it was known at ``until_ms``: among its labels with
    ``labelled_at <= until_ms``, the latest (on a tie, the one read last: later on the topic)."""
    out: dict[str, TopicLabel] = {}
    for lab in labels:
        if lab.label.labelled_at > until_ms:
            continue
        known = out.get(lab.label.event_id)
        if known is None or lab.label.labelled_at >= known.label.labelled_at:
            out[lab.label.event_id] = lab
    return out


@dataclass(frozen=True)
class Rows:
    """The training rows and what happened to every replayed payment."""

    data: Dataset
    replayed: int
    labelled: int
    unknown_left_out: int
    duplicates: int


def labelled_rows(
    replayed: Iterable[tuple[Transaction, Mapping[str, float]]],
    known: Mapping[str, TopicLabel],
    row_of: Callable[[Transaction, Mapping[str, float]], list[float]],
) -> Rows:
    """One row per replayed payment whose label is ``known``; the others are counted, not kept
    (an unknown label is not a negative). A repeated ``event_id`` (an at-least-once duplicate) keeps
    its first row.

    Raises:
        TrainingError: no payment has a known label, or the known labels are all of one class.
    """
    rows: list[list[float]] = []
    ys: list[int] = []
    kinds: list[str] = []
    amounts: list[float] = []
    times: list[int] = []
    seen: set[str] = set()
    total = unknown = duplicates = 0
    for txn, stream in replayed:
        total += 1
        if txn.event_id in seen:
            duplicates += 1
            continue
        seen.add(txn.event_id)
        lab = known.get(txn.event_id)
        if lab is None:
            unknown += 1
            continue
        rows.append(row_of(txn, stream))
        ys.append(int(lab.label.is_fraud))
        kinds.append((lab.fraud_type or "") if lab.label.is_fraud else "")
        amounts.append(to_eur(txn.amount_minor, txn.currency))
        times.append(txn.event_time)
    if not rows:
        raise TrainingError(
            f"none of the {total} payments up to T has a label known at T: nothing to train on "
            "(import labels, or choose a later --until)"
        )
    frauds = sum(ys)
    if frauds in (0, len(ys)):
        raise TrainingError(
            f"all {len(ys)} payments with a label known at T are "
            f"{'fraud' if frauds else 'legitimate'}: a model needs both classes"
        )
    data = Dataset(
        x=np.asarray(rows, dtype=np.float64),
        y=np.asarray(ys, dtype=np.int8),
        fraud_type=np.asarray(kinds, dtype=np.str_),
        amount_eur=np.asarray(amounts, dtype=np.float64),
        event_time=np.asarray(times, dtype=np.int64),
    )
    return Rows(data, total, len(ys), unknown, duplicates)


def model_row(txn: Transaction, stream: Mapping[str, float]) -> list[float]:
    """The model's row of one payment: the job's features, without a profile (see the docstring)."""
    return to_row(build_features(txn, stream, None))


def in_event_time_order(payments: Sequence[Positioned]) -> list[Transaction]:
    """Payments ordered by event time, ties by partition then offset (a fixed, replayable order)."""
    return [p.txn for p in sorted(payments, key=lambda p: (p.txn.event_time, p.partition, p.offset))]


def build_rows(
    history: TopicHistory, label_delay_ms: int = DEFAULT_LABEL_DELAY_MS, since_ms: int | None = None
) -> tuple[Rows, dict[str, Any]]:
    """Replay every payment up to T with the labels known at T; the rows and the card's label section.

    With ``since_ms`` (a retraining window), payments before it are replayed for their state only,
    as the live job's state holds them, and give no row.
    """
    known_labels = [lab for lab in history.labels if lab.label.labelled_at <= history.until_ms]
    latest = labels_as_of(known_labels, history.until_ms)
    txns = in_event_time_order(history.payments)
    engine = StreamFeatures(label_delay_ms)
    replayed = replay(txns, (lab.label for lab in known_labels), engine)
    if since_ms is not None:
        replayed = ((txn, stream) for txn, stream in replayed if txn.event_time >= since_ms)
    rows = labelled_rows(replayed, latest, model_row)
    event_times = {t.event_id: t.event_time for t in txns}
    delays = [lab.label.labelled_at - event_times[e] for e, lab in latest.items() if e in event_times]
    section = {
        "known_at_t": rows.labelled,
        "window_from": None if since_ms is None else iso(since_ms),
        "fraud_known_at_t": int(rows.data.y.sum()),
        "unknown_at_t_left_out": rows.unknown_left_out,
        "unknown_policy": UNKNOWN_LABEL_POLICY,
        "records_read": len(history.labels) + history.labels_after_t,
        "records_after_t_ignored": history.labels_after_t,
        "records_rejected": dict(sorted(history.rejected_labels.items())),
        "without_payment_up_to_t": sum(1 for e in latest if e not in event_times),
        "by_source": dict(sorted(Counter(lab.source for lab in latest.values()).items())),
        "observed_delay_days": _delay_summary(delays),
    }
    return rows, section


def _delay_summary(delays: Sequence[int]) -> dict[str, float] | None:
    if not delays:
        return None
    day = 86_400_000
    return {
        "min": round(min(delays) / day, 3),
        "median": round(statistics.median(delays) / day, 3),
        "max": round(max(delays) / day, 3),
    }


def read_history(
    bootstrap: str | KafkaConnection,
    registry_url: str,
    topic: str,
    labels_topic: str,
    until_ms: int,
    timeout_s: float = 600.0,
) -> TopicHistory:
    """Every partition of ``topic`` and ``labels_topic`` from low to high watermark, decoded and
    cut at ``until_ms`` (module docstring, steps 1-2).

    Raises:
        TrainingError: a topic does not exist or has no partitions, or reading timed out.
    """
    started = time.monotonic()
    registry = RegistryClient(registry_url)
    intake = Intake(registry, AvroSerializer(registry, schemas.DEAD_LETTER), DLQ, "training")
    history = TopicHistory(until_ms, [], [], {})
    bounds: Bounds = {}
    for name in (topic, labels_topic):
        try:
            found = partition_bounds(bootstrap, [name])
        except Exception as exc:  # librdkafka raises KafkaException or KeyError for an unknown topic
            raise TrainingError(f"cannot read the partitions of topic {name!r}: {exc}") from exc
        if not found:
            raise TrainingError(f"topic {name!r} has no partitions (does it exist?)")
        bounds.update(found)
        history.offsets[name] = {p: [low, high] for (_t, p), (low, high) in sorted(found.items())}

    def decode_payment(value: bytes | None) -> dict[str, Any]:
        try:
            return {"txn": intake.decode(value, now_ms=until_ms)}
        except ValidationError as exc:
            # Further than the job's bound ahead of T: after T, not a bad record.
            if exc.field == "event_time" and isinstance(exc.value, int) and exc.value > until_ms:
                return {"after": True}
            return {"error": exc.error_type}
        except DecodeError as exc:
            return {"error": exc.error_type}

    def decode_lab(value: bytes | None) -> dict[str, Any]:
        try:
            record = decode_label(value, registry.parsed_schema)
        except DecodeError as exc:
            return {"error": exc.error_type}
        return {
            "label": TopicLabel(
                Label.from_record(record), record.get("fraud_type"), str(record.get("source") or "simulator")
            )
        }

    for name, decode in ((topic, decode_payment), (labels_topic, decode_lab)):
        part = {tp: se for tp, se in bounds.items() if tp[0] == name}
        try:
            records = read_range(
                consumer(bootstrap, f"training-reader-{uuid.uuid4().hex[:8]}"),
                decode,
                part,
                timeout_s=timeout_s,
            )
        except ReadTimeout as exc:
            raise TrainingError(f"reading {name}: {exc}") from exc
        for _t, partition, offset, rec in records:
            _collect(history, name == topic, partition, offset, rec)
    history.read_s = time.monotonic() - started
    return history


def _collect(
    history: TopicHistory, payment: bool, partition: int, offset: int, rec: dict[str, Any] | None
) -> None:
    if rec is None:  # read_range's own decode never returns None here; kept for its contract
        (history.rejected_payments if payment else history.rejected_labels)["UNDECODABLE"] += 1
    elif "error" in rec:
        (history.rejected_payments if payment else history.rejected_labels)[rec["error"]] += 1
    elif payment:
        if "after" in rec or rec["txn"].event_time > history.until_ms:
            history.payments_after_t += 1
        else:
            history.payments.append(Positioned(rec["txn"], partition, offset))
    elif rec["label"].label.labelled_at > history.until_ms:
        history.labels_after_t += 1
    else:
        history.labels.append(rec["label"])


def source_section(
    history: TopicHistory, rows: Rows, labels: Mapping[str, Any], topic: str, labels_topic: str, delay_ms: int
) -> dict[str, Any]:
    """The card's ``training_data.source`` for a model trained from the topics."""
    times = [p.txn.event_time for p in history.payments]
    return {
        "kind": "topics",
        "topics": {"payments": topic, "labels": labels_topic},
        "offsets_read": {
            name: {str(p): {"from": lo, "to_exclusive": hi} for p, (lo, hi) in parts.items()}
            for name, parts in history.offsets.items()
        },
        "until": iso(history.until_ms),
        "until_ms": history.until_ms,
        "event_time_range": {
            "from": iso(min(times)) if times else None,
            "to": iso(max(times)) if times else None,
        },
        "payments": {
            "up_to_t": len(history.payments),
            "after_t_ignored": history.payments_after_t,
            "rejected_by_job_validation": dict(sorted(history.rejected_payments.items())),
            "duplicate_event_ids": rows.duplicates,
            "training_rows": rows.labelled,
        },
        "labels": dict(labels),
        "label_delay_ms": delay_ms,
        "label_delay_note": (
            "the label-driven features count a fraud once its label's labelled_at <= the payment's event "
            f"time, in the window ending {delay_ms / 86_400_000:g} days before it (the job's LABEL_DELAY_MS)"
        ),
        "profiles": PROFILES_NOTE,
    }


def dataset_from_topics(
    bootstrap: str | KafkaConnection,
    registry_url: str,
    topic: str,
    labels_topic: str,
    until_ms: int,
    label_delay_ms: int = DEFAULT_LABEL_DELAY_MS,
    since_ms: int | None = None,
) -> tuple[Dataset, dict[str, Any], dict[str, float], TopicHistory]:
    """The training set of the topics up to ``until_ms`` (rows from ``since_ms`` on), its card source
    section, timings (s) and what was read."""
    history = read_history(bootstrap, registry_url, topic, labels_topic, until_ms)
    log.info(
        "read %d payments up to T (%d after), %d labels up to T (%d after) in %.1f s",
        len(history.payments),
        history.payments_after_t,
        len(history.labels),
        history.labels_after_t,
        history.read_s,
    )
    started = time.monotonic()
    rows, labels = build_rows(history, label_delay_ms, since_ms)
    replay_s = time.monotonic() - started
    source = source_section(history, rows, labels, topic, labels_topic, label_delay_ms)
    timings = {"read_s": round(history.read_s, 2), "replay_s": round(replay_s, 2)}
    return rows.data, source, timings, history


@dataclass(frozen=True)
class Trained:
    """A model trained from the topics: its card, the seconds each step took, and what was read."""

    card: ModelCard
    timings_s: dict[str, float]
    history: TopicHistory


def train_from_topics(
    bootstrap: str | KafkaConnection,
    registry_url: str,
    topic: str,
    labels_topic: str,
    until_ms: int,
    model_dir: Path,
    config: TrainConfig,
    promote: bool,
    label_delay_ms: int = DEFAULT_LABEL_DELAY_MS,
    since_ms: int | None = None,
) -> Trained:
    """Read, replay, train (:func:`inference_service.training.train.train`), save the version, and
    point LIVE at it when ``promote``."""
    data, source, timings, history = dataset_from_topics(
        bootstrap, registry_url, topic, labels_topic, until_ms, label_delay_ms, since_ms
    )
    started = time.monotonic()
    model, card = train(data, config, source)
    timings["fit_s"] = round(time.monotonic() - started, 2)
    save_version(model_dir, model, card)
    if promote:
        write_pointer(model_dir, LIVE_POINTER, card.version)
    return Trained(card, timings, history)


EXIT_BAD_INPUT = 3


def run(args: TrainCli) -> int:
    """``--from-topics``: train, register, print one JSON line; exit 3 when the history cannot train
    a model (no labelled payment, one class, a split period without fraud) or --until is not a
    time, 1 on a service failure."""
    connections = ConnectionSettings()
    try:
        until_ms = parse_until(args.TRAIN_UNTIL)
        result = train_from_topics(
            connections.kafka,
            connections.SCHEMA_REGISTRY_URL,
            args.TRAIN_TOPIC,
            args.TRAIN_LABELS_TOPIC,
            until_ms,
            args.MODEL_DIR,
            args.config,
            promote=not args.TRAIN_NO_PROMOTE,
            label_delay_ms=args.LABEL_DELAY_MS,
        )
    except TrainingError as exc:
        sys.stderr.write(f"train --from-topics: cannot train: {exc}\n")
        return EXIT_BAD_INPUT
    except FraudPipelineError as exc:
        sys.stderr.write(f"train --from-topics: failed: {exc}\n")
        return 1
    card = result.card
    if card.training_data is None:  # train() always writes it
        raise TrainingError(f"the card of {card.version} has no training_data")
    source = card.training_data.source
    held = card.metrics["held_out"]
    summary = {
        "version": card.version,
        "promoted": not args.TRAIN_NO_PROMOTE,
        "until": source["until"],
        "event_time_range": source["event_time_range"],
        "training_rows": source["payments"]["training_rows"],
        "labels_known_at_t": source["labels"]["known_at_t"],
        "unknown_at_t_left_out": source["labels"]["unknown_at_t_left_out"],
        "threshold": card.threshold,
        "block_threshold": card.block_threshold,
        "pr_auc": held["pr_auc"],
        "timings_s": result.timings_s,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
