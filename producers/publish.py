"""Publishing simulated payments to Kafka: Confluent-framed Avro, idempotent, paced, with labels.

:func:`produce_events` is the library entry point used by the CLI (:mod:`producers.produce`), the
demo, the benchmark and the tests. It takes settings as an argument and never reads the environment.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro.validation
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from tqdm import tqdm

import schemas
from fraud_core.exceptions import (
    ConfigError,
    RegistryError,
    RegistryUnavailable,
    SchemaNotFound,
    SerializationError,
)
from producers.avro_file import StreamFileWriter
from producers.settings import ProducerSettings
from producers.simulator import SimConfig, SimEvent, txn_record

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0
_MAX_LOGGED_ERRORS = 20  # then only every 1000th, the summary has the total


def typed_registry_error(exc: SchemaRegistryError, message: str) -> RegistryError:
    """confluent-kafka's registry error as ours: 404 not found, 5xx/429/401/403 unavailable."""
    status = exc.http_status_code
    if status == 404:
        return SchemaNotFound(message)
    if status is None or status < 0 or status >= 500 or status in (401, 403, 408, 429):
        return RegistryUnavailable(message)
    return RegistryError(message)


@dataclass
class ProduceSummary:
    """What a run did. ``errors`` counts records not delivered (serialization or broker failure)."""

    events: int = 0
    labels: int = 0
    delivered: int = 0
    errors: int = 0
    labels_pending: int = 0
    fraud_by_type: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    interrupted: bool = False
    file_events: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def fraud(self) -> int:
        return sum(self.fraud_by_type.values())

    def render(self) -> str:
        """A human-readable multi-line summary."""
        by_type = ", ".join(f"{k}={v}" for k, v in sorted(self.fraud_by_type.items())) or "none"
        share = 100 * self.fraud / self.events if self.events else 0.0
        lines = [
            f"events sent     {self.events:>10}   ({self.events_per_s:,.0f}/s over {self.elapsed_s:.1f} s)",
            f"labels sent     {self.labels:>10}"
            + (f"   ({self.labels_pending} pending, not sent)" * bool(self.labels_pending)),
            f"delivered       {self.delivered:>10}",
            f"errors          {self.errors:>10}",
            f"fraud events    {self.fraud:>10}   ({share:.2f}%: {by_type})",
        ]
        if self.file_events:
            lines.append(f"written to file {self.file_events:>10}")
        if self.interrupted:
            lines.append("interrupted: stopped early on Ctrl-C")
        return "\n".join(lines)


def new_headers() -> list[tuple[str, bytes]]:
    """Fresh ``correlation_id`` and W3C ``traceparent`` headers for one input event."""
    ids = os.urandom(32).hex()  # 16 bytes of correlation id, 16 of trace id
    span = os.urandom(8).hex()
    return [
        ("correlation_id", ids[:32].encode()),
        ("traceparent", f"00-{ids[32:]}-{span}-01".encode()),
    ]


def mask_card(card_id: str) -> str:
    """A card token as it may appear in logs: only its last four characters."""
    return f"…{card_id[-4:]}"


def describe_misfit(record: dict[str, Any], schema: Any) -> str | None:
    """Name the field and value of ``record`` that do not fit ``schema``, or None when it fits."""
    try:
        fastavro.validation.validate(record, schema, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        parts = []
        for err in exc.errors:
            name = str(getattr(err, "field", "?")).rsplit(".", 1)[-1]
            datum = getattr(err, "datum", None)
            shown = mask_card(str(datum)) if name == "card_id" else repr(datum)
            expected = getattr(err, "schema", None)
            if isinstance(expected, dict):
                expected = expected.get("symbols") or expected.get("type")
            parts.append(f"field {name!r}={shown} does not fit the schema (expected {expected})")
        return "; ".join(parts)
    return None


class _Pacer:
    """Wall-clock pacing by a fixed rate, or by the events' own event-time gaps scaled by ``speed``."""

    def __init__(self, rate: float, speed: float | None) -> None:
        self.rate = rate
        self.speed = speed
        self.t0 = time.monotonic()
        self.first_event_ms: int | None = None

    def due(self, index: int, event: SimEvent) -> float:
        """Monotonic time at which event number ``index`` should be sent."""
        if self.speed is not None:
            if self.speed <= 0:
                return 0.0
            if self.first_event_ms is None:
                self.first_event_ms = event.txn.event_time
            return self.t0 + (event.txn.event_time - self.first_event_ms) / 1000 / self.speed
        return self.t0 + index / self.rate if self.rate > 0 else 0.0


class _Publisher:
    """One idempotent producer writing payments (and labels) with registry-framed Avro values."""

    def __init__(
        self, settings: ProducerSettings, topic: str, labels_topic: str | None, summary: ProduceSummary
    ):
        self.topic = topic
        self.labels_topic = labels_topic
        self.summary = summary
        registry = SchemaRegistryClient({"url": settings.SCHEMA_REGISTRY_URL})
        # The schemas are registered at stack start-up; we serialize with the latest registered
        # version and never register from here, so a producer cannot widen a contract by accident.
        conf = {"auto.register.schemas": False, "use.latest.version": True, "validate.strict": True}
        self._txn_schema = schemas.load(schemas.TRANSACTION)
        self._label_schema = schemas.load(schemas.LABEL)
        self._txn_serializer = AvroSerializer(registry, schemas.load_text(schemas.TRANSACTION), conf=conf)
        self._label_serializer = AvroSerializer(registry, schemas.load_text(schemas.LABEL), conf=conf)
        self._txn_ctx = SerializationContext(topic, MessageField.VALUE)
        self._label_ctx = SerializationContext(labels_topic or "", MessageField.VALUE)
        self.producer = Producer(
            settings.kafka.librdkafka(
                **{
                    "client.id": "fraud-producer",
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": settings.PRODUCER_LINGER_MS,
                    "compression.type": "lz4",
                    "queue.buffering.max.messages": 200_000,
                }
            )
        )
        self._check(registry, settings)

    def _check(self, registry: SchemaRegistryClient, settings: ProducerSettings) -> None:
        """Fail fast, with the setting to fix, when a topic or its schema is missing."""
        topics = [t for t in (self.topic, self.labels_topic) if t]
        for t in topics:
            try:
                registry.get_latest_version(f"{t}-value")
            except SchemaRegistryError as exc:
                raise typed_registry_error(
                    exc,
                    f"no schema registered under subject {t}-value at SCHEMA_REGISTRY_URL="
                    f"{settings.SCHEMA_REGISTRY_URL} ({exc}); run `make up` to register the schemas",
                ) from exc
            except Exception as exc:  # httpx connection errors and the like
                raise RegistryUnavailable(
                    f"schema registry unreachable at SCHEMA_REGISTRY_URL={settings.SCHEMA_REGISTRY_URL}: "
                    f"{exc}; is the stack up (`make up`)?"
                ) from exc
        try:
            metadata = self.producer.list_topics(timeout=10)
        except KafkaException as exc:
            raise ConfigError(
                f"Kafka unreachable at KAFKA_BOOTSTRAP_SERVERS={settings.kafka}: {exc}"
            ) from exc
        for t in topics:
            if t not in metadata.topics:
                raise ConfigError(f"topic {t!r} does not exist (automatic creation is off); run `make up`")

    def _serialize(
        self, serializer: AvroSerializer, schema: Any, ctx: SerializationContext, record: dict[str, Any]
    ) -> bytes:
        # fastavro's writer coerces some misfits silently (a string into a boolean): validate first.
        problem = describe_misfit(record, schema)
        if problem is None:
            try:
                value = serializer(record, ctx)
            except SchemaRegistryError as exc:
                raise typed_registry_error(exc, f"{ctx.topic}-value: registry lookup failed: {exc}") from exc
            except (TypeError, ValueError, KeyError) as exc:
                # Fits our .avsc but not the latest registered version: the registry moved on.
                raise SerializationError(
                    f"{ctx.topic}: record does not fit the registered schema: {exc}"
                ) from exc
            if value is not None:
                return value
            problem = "serializer returned no bytes"
        raise SerializationError(f"{ctx.topic}: {problem}")

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.summary.delivered += 1
            return
        self.summary.errors += 1
        if self.summary.errors <= _MAX_LOGGED_ERRORS or self.summary.errors % 1000 == 0:
            log.error(
                "delivery failed to %s[%s] key=%s: %s (%d errors so far)",
                msg.topic(),
                msg.partition(),
                (msg.key() or b"").decode(errors="replace"),
                err,
                self.summary.errors,
            )

    def _send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
        self.producer.poll(0)

    def send_event(self, event: SimEvent, headers: list[tuple[str, bytes]]) -> None:
        value = self._serialize(self._txn_serializer, self._txn_schema, self._txn_ctx, txn_record(event.txn))
        self._send(self.topic, event.txn.user_id.encode(), value, headers)

    def send_label(self, event: SimEvent, delay_ms: int, headers: list[tuple[str, bytes]]) -> None:
        assert self.labels_topic is not None
        record = event.label_record(delay_ms)
        value = self._serialize(self._label_serializer, self._label_schema, self._label_ctx, record)
        self._send(self.labels_topic, event.txn.user_id.encode(), value, headers)

    def wait(self, until: float, stop: threading.Event) -> None:
        """Serve delivery callbacks until the monotonic time ``until`` or until ``stop`` is set."""
        while (left := until - time.monotonic()) > 0 and not stop.is_set():
            self.producer.poll(min(left, 0.1))

    def flush(self, timeout_s: float) -> int:
        remaining = self.producer.flush(timeout_s)
        if remaining:
            log.error(
                "%d records still undelivered after %.0f s flush; counted as errors", remaining, timeout_s
            )
            self.summary.errors += remaining
        return int(remaining)


def produce_events(
    settings: ProducerSettings,
    events: Iterable[SimEvent],
    rate: float = 0.0,
    *,
    topic: str | None = None,
    labels_topic: str | None = "",
    label_delay_s: float = 0.0,
    speed: float | None = None,
    max_seconds: float | None = None,
    avro_file: Path | None = None,
    sim_config: SimConfig | None = None,
    progress: bool = False,
    total: int | None = None,
    stop: threading.Event | None = None,
) -> ProduceSummary:
    """Send ``events`` to Kafka and their ground-truth labels to the labels topic.

    Args:
        settings: connection settings (bootstrap servers, registry URL, linger).
        events: the stream, usually ``Simulator(...).events(...)`` or ``avro_file.read_stream(...)``.
        rate: events per second of wall clock; 0 sends as fast as the broker takes them.
        topic: payments topic; defaults to ``settings.PRODUCER_TOPIC``.
        labels_topic: labels topic; ``""`` (default) means ``settings.labels_topic``, None sends no labels.
        label_delay_s: wall-clock delay before a label is sent (a chargeback); its ``labelled_at`` is
            the event time plus this delay. Labels still pending at the end are waited for.
        speed: when set, pace by the events' event-time gaps divided by ``speed`` (0 = no pacing)
            instead of by ``rate``; this is how a recorded file is replayed.
        max_seconds: stop after this many wall-clock seconds.
        avro_file: also write the stream (and labels) to this Avro container file.
        sim_config: recorded in the Avro file's metadata so the profiles can be rebuilt.
        progress: show a tqdm progress bar on stderr.
        total: expected number of events, for the progress bar.
        stop: when set (by a signal handler, say), stop sending, flush and return; the CLI sets it
            on Ctrl-C, since a KeyboardInterrupt raised inside librdkafka's poll is not clean.

    Returns:
        The :class:`ProduceSummary`; ``interrupted`` is set when Ctrl-C stopped the run, after a flush.

    Raises:
        SerializationError: a record does not fit its schema (message names the field and value).
        RegistryError, ConfigError: the registry, a subject, Kafka or a topic is unavailable.
    """
    if rate < 0:
        raise ConfigError(f"rate must be >= 0, got {rate:g}")
    if label_delay_s < 0:
        raise ConfigError(f"label_delay_s must be >= 0, got {label_delay_s:g}")
    summary = ProduceSummary()
    topic = topic or settings.PRODUCER_TOPIC
    labels = settings.labels_topic if labels_topic == "" else labels_topic
    publisher = _Publisher(settings, topic, labels, summary)
    delay_ms = round(label_delay_s * 1000)
    pending: deque[tuple[float, SimEvent, list[tuple[str, bytes]]]] = deque()
    writer = StreamFileWriter(avro_file, sim_config, delay_ms) if avro_file else None
    bar = tqdm(total=total, unit="ev", disable=not progress, mininterval=0.5, dynamic_ncols=True)
    pacer = _Pacer(rate, speed)
    stop = stop or threading.Event()
    started = time.monotonic()
    deadline = started + max_seconds if max_seconds is not None else None
    try:
        for index, event in enumerate(events):
            due = pacer.due(index, event)
            if deadline is not None and max(due, time.monotonic()) >= deadline:
                break
            publisher.wait(due, stop)
            if stop.is_set():
                break
            headers = new_headers()
            publisher.send_event(event, headers)
            summary.events += 1
            if event.fraud_type:
                summary.fraud_by_type[event.fraud_type] += 1
            if writer:
                writer.write(event)
            if labels:
                pending.append((time.monotonic() + label_delay_s, event, headers))
                _send_due_labels(publisher, pending, delay_ms, summary, time.monotonic())
            bar.update(1)
        if pending:
            log.info("waiting %.1f s for %d pending labels (chargeback delay)", label_delay_s, len(pending))
            publisher.wait(pending[-1][0], stop)
            if not stop.is_set():
                _send_due_labels(publisher, pending, delay_ms, summary, float("inf"))
    except KeyboardInterrupt:
        stop.set()
    finally:
        if stop.is_set():
            summary.interrupted = True
            log.warning("interrupted: flushing what was sent")
        bar.close()
        summary.labels_pending = len(pending)
        if writer:
            writer.close()
            summary.file_events = writer.count
        publisher.flush(FLUSH_TIMEOUT_S)
        summary.elapsed_s = time.monotonic() - started
    return summary


def _send_due_labels(
    publisher: _Publisher,
    pending: deque[tuple[float, SimEvent, list[tuple[str, bytes]]]],
    delay_ms: int,
    summary: ProduceSummary,
    now: float,
) -> None:
    while pending and pending[0][0] <= now:
        _, event, headers = pending.popleft()
        publisher.send_label(event, delay_ms, headers)
        summary.labels += 1
