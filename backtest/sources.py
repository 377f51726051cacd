"""What a backtest reads besides its own outputs: labels, the live decisions (for parity), and a
producer Avro file (published into a topic the run owns, so the job reads it like live input).
All reads use throwaway consumer groups that never commit.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

import schemas
from backtest.exceptions import BadInputError
from backtest.replay import create_owned_topics, read_partitions
from fraud_core import avro
from fraud_core.connections import KafkaConnection, as_connection
from fraud_core.exceptions import DecodeError, FraudPipelineError
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher, consumer, partition_bounds
from fraud_core.labels import decode_label, epoch_ms
from fraud_core.registry import RegistryClient
from fraud_core.topics import TopicSpec
from fraud_core.transaction import UUID_PATTERN
from producers.avro_file import labels_path, read_stream

_LIVE_MARGIN_MS = 10 * 60 * 1000
_UUID = re.compile(UUID_PATTERN)
log = logging.getLogger(__name__)


def event_time_reader(registry_url: str) -> Callable[[bytes | None], int | None]:
    """``value -> event_time`` of a ``payments.initiated`` record (None when it is not one)."""
    registry = RegistryClient(registry_url)
    reader = schemas.load(schemas.TRANSACTION)

    def event_time(value: bytes | None) -> int | None:
        try:
            record = avro.decode(value, registry.parsed_schema, reader)
        except DecodeError:
            return None
        return epoch_ms(record["event_time"])

    return event_time


def read_labels(
    bootstrap: str | KafkaConnection, registry_url: str, topic: str, event_ids: set[str]
) -> dict[str, dict[str, Any]]:
    """The labels of ``event_ids`` from ``topic`` (everything retained is scanned; the last label
    wins). A value that is not a valid label is left out and logged with its reason: its payment
    then counts as unlabelled."""
    bounds = _existing_bounds(bootstrap, [topic])
    registry = RegistryClient(registry_url)
    refused: Counter[str] = Counter()

    def decode(value: bytes | None) -> dict[str, Any] | None:
        try:
            return decode_label(value, registry.parsed_schema)
        except DecodeError as exc:
            if not refused:
                log.warning("label refused (%s): %s", exc.error_type, exc)
            refused[exc.error_type] += 1
            return None

    out: dict[str, dict[str, Any]] = {}
    for _t, _p, _o, record in read_partitions(
        bootstrap,
        registry_url,
        bounds,
        keep=lambda r: r.get("event_id") in event_ids,
        timeout_s=600,
        decode=decode,
    ):
        if record is not None:
            out[str(record["event_id"])] = record
    if refused:
        log.warning(
            "%d values of %s are not labels and were left out: %s",
            sum(refused.values()),
            topic,
            ", ".join(f"{k}={v}" for k, v in sorted(refused.items())),
        )
    return out


def read_live_decisions(
    bootstrap: str | KafkaConnection, registry_url: str, topics: list[str], event_ids: set[str], since_ms: int
) -> dict[str, dict[str, Any]]:
    """Live decisions of ``event_ids`` on ``topics``, from records written after ``since_ms`` (less a
    margin): a decision is always written after its input record, so older records cannot match."""
    bounds = _existing_bounds(bootstrap, topics)
    if not bounds:
        return {}
    c = consumer(bootstrap)
    try:
        query = [TopicPartition(t, p, max(0, since_ms - _LIVE_MARGIN_MS)) for (t, p) in bounds]
        for tp in c.offsets_for_times(query, timeout=10):
            low, high = bounds[(tp.topic, tp.partition)]
            bounds[(tp.topic, tp.partition)] = (max(low, tp.offset) if tp.offset >= 0 else high, high)
    finally:
        c.close()
    out: dict[str, dict[str, Any]] = {}
    for _t, _p, _o, record in read_partitions(
        bootstrap, registry_url, bounds, keep=lambda r: r.get("event_id") in event_ids, timeout_s=600
    ):
        if record is not None:
            out.setdefault(str(record["event_id"]), record)
    return out


def _existing_bounds(
    bootstrap: str | KafkaConnection, topics: Iterable[str]
) -> dict[tuple[str, int], tuple[int, int]]:
    c = consumer(bootstrap)
    try:
        names = set(c.list_topics(timeout=10).topics)
    finally:
        c.close()
    missing = [t for t in topics if t not in names]
    if missing:
        raise BadInputError(
            f"topic(s) {', '.join(missing)} do not exist at {as_connection(bootstrap).bootstrap_servers}"
        )
    return partition_bounds(bootstrap, topics)


def publish_avro_file(
    bootstrap: str | KafkaConnection, registry_url: str, path: Path, topic: str, partitions: int = 4
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Publish the events of a producer Avro file into ``topic`` (created here, key = user_id, in
    file order); returns (events, labels by event_id from the file's labels file, if any).

    Raises:
        BadInputError: the file is missing, unreadable or empty.
    """
    if not path.is_file():
        raise BadInputError(f"--avro-file {path} does not exist")
    create_owned_topics(
        bootstrap, registry_url, [TopicSpec(topic, partitions, 7 * 24 * 3600 * 1000, schemas.TRANSACTION)]
    )
    publisher = AvroPublisher(bootstrap, registry_url, linger_ms=20)
    labelled = labels_path(path).exists()
    labels: dict[str, dict[str, Any]] = {}
    count = 0
    try:
        for event in read_stream(path):
            publisher.send(
                topic, schemas.TRANSACTION, event.txn.user_id, event.txn.to_record(), new_headers()
            )
            if labelled:
                labels[event.txn.event_id] = event.label_record()
            count += 1
    except (FraudPipelineError, ValueError, OSError) as exc:
        raise BadInputError(f"--avro-file {path} cannot be read: {exc}") from exc
    publisher.flush(60)
    if count == 0:
        raise BadInputError(f"--avro-file {path} holds no events: nothing to backtest")
    return count, labels
