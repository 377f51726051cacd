"""Publishing simulated payments to Kafka: Confluent-framed Avro, idempotent, paced, with labels.

:func:`produce_events` is the library entry point used by the CLI (:mod:`producers.produce`), the
demo, the benchmark and the tests. It takes settings as an argument and never reads the environment.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer
from tqdm import tqdm

import schemas
from fraud_core.exceptions import ConfigError, RegistryError, RegistryUnavailable, SchemaNotFound
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.registry import RegistryClient
from fraud_core.simulator import SimConfig, SimEvent
from fraud_core.transaction import Transaction
from producers.avro_file import StreamFileWriter
from producers.settings import ProducerSettings

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0


@dataclass
class ProduceSummary:
    """What a run did. ``errors`` counts records not delivered (serialization or broker failure)."""

    events: int = 0
    labels: int = 0
    labels_missing: int = 0
    labels_after_end: int = 0
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
            + (f"   ({self.labels_pending} pending, not sent)" * bool(self.labels_pending))
            + (
                f"   ({self.labels_missing} never arrive; {self.labels_after_end} known after the last "
                "payment, sent at the end)"
            )
            * bool(self.labels_missing or self.labels_after_end),
            f"delivered       {self.delivered:>10}",
            f"errors          {self.errors:>10}",
            f"fraud events    {self.fraud:>10}   ({share:.2f}%: {by_type})",
        ]
        if self.file_events:
            lines.append(f"written to file {self.file_events:>10}")
        if self.interrupted:
            lines.append("interrupted: stopped early on Ctrl-C")
        return "\n".join(lines)


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


Headers = list[tuple[str, bytes]]


class LabelSchedule:
    """Labels at their simulated delay (:attr:`fraud_core.simulator.SimEvent.labelled_at`), in event
    time: a label is due once the stream has reached its ``labelled_at``, as a chargeback arrives
    while later payments go on; a label that never arrives is never due."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, SimEvent, Headers]] = []
        self._order = itertools.count()
        self.missing = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, event: SimEvent, headers: Headers) -> None:
        """Schedule the label of ``event`` (sent with the payment's ``headers``), unless it never arrives."""
        at = event.labelled_at
        if at is None:
            self.missing += 1
            return
        heapq.heappush(self._heap, (at, next(self._order), event, headers))

    def due(self, event_time: int) -> list[tuple[SimEvent, Headers]]:
        """The labels known by ``event_time``, in ``labelled_at`` order, taken off the schedule."""
        out = []
        while self._heap and self._heap[0][0] <= event_time:
            _, _, event, headers = heapq.heappop(self._heap)
            out.append((event, headers))
        return out

    def rest(self) -> list[tuple[SimEvent, Headers]]:
        """Every label still scheduled (known only after the stream's last payment), in order."""
        return self.due(2**63)


class _Publisher:
    """One idempotent producer writing payments (and labels) with registry-framed Avro values."""

    def __init__(
        self,
        settings: ProducerSettings,
        topic: str,
        labels_topic: str | None,
        summary: ProduceSummary,
        *,
        validate: bool = True,
    ):
        self.topic = topic
        self.labels_topic = labels_topic
        self.summary = summary
        registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
        # Validated: a record the simulator or a file gets wrong is refused naming field and value.
        # Only a caller whose every record passed the job's validation first (make import) skips it.
        self._txns = AvroSerializer(registry, schemas.TRANSACTION, validate=validate)
        self._labels = AvroSerializer(registry, schemas.LABEL, validate=validate)
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
        self.publisher = Publisher(self.producer)
        self._check(settings)

    def _check(self, settings: ProducerSettings) -> None:
        """Fail fast, with the setting to fix, when a topic or its schema is missing."""
        checks = [(self._txns, self.topic)]
        if self.labels_topic:
            checks.append((self._labels, self.labels_topic))
        for serializer, t in checks:
            try:
                serializer.schema_id(t)
            except SchemaNotFound as exc:
                raise SchemaNotFound(
                    f"schema {serializer.schema_name} is not registered under subject {t}-value at "
                    f"SCHEMA_REGISTRY_URL={settings.SCHEMA_REGISTRY_URL} ({exc}); run `make up` to register it"
                ) from exc
            except RegistryUnavailable as exc:
                raise RegistryUnavailable(
                    f"schema registry unreachable at SCHEMA_REGISTRY_URL={settings.SCHEMA_REGISTRY_URL}: "
                    f"{exc}; is the stack up (`make up`)?"
                ) from exc
            except RegistryError as exc:
                raise RegistryError(f"subject {t}-value at {settings.SCHEMA_REGISTRY_URL}: {exc}") from exc
        try:
            metadata = self.producer.list_topics(timeout=10)
        except KafkaException as exc:
            raise ConfigError(
                f"Kafka unreachable at KAFKA_BOOTSTRAP_SERVERS={settings.kafka}: {exc}"
            ) from exc
        for _serializer, name in checks:
            if name not in metadata.topics:
                raise ConfigError(f"topic {name!r} does not exist (automatic creation is off); run `make up`")

    def send_event(self, event: SimEvent, headers: list[tuple[str, bytes]]) -> None:
        self.send_transaction(event.txn, headers)

    def send_label(self, event: SimEvent, delay_ms: int | None, headers: list[tuple[str, bytes]]) -> None:
        """The label of ``event``, known ``delay_ms`` after it; None: at its simulated delay."""
        if delay_ms is None:
            record = event.simulated_label()
            if record is None:
                raise ValueError(f"event {event.txn.event_id} has no label: it never arrives")
        else:
            record = event.label_record(delay_ms)
        self.send_label_record(event.txn.user_id, record, headers)

    def send_transaction(self, txn: Transaction, headers: list[tuple[str, bytes]]) -> None:
        """One payment, keyed by its user (also what ``make import`` sends)."""
        value = self._txns.encode(self.topic, txn.to_record())
        self.publisher.produce(self.topic, txn.user_id.encode(), value, headers)

    def send_label_record(
        self, user_id: str, label: dict[str, Any], headers: list[tuple[str, bytes]]
    ) -> None:
        """One ``label.avsc`` record, keyed by the payment's user."""
        assert self.labels_topic is not None
        value = self._labels.encode(self.labels_topic, label)
        self.publisher.produce(self.labels_topic, user_id.encode(), value, headers)

    def wait(self, until: float, stop: threading.Event) -> None:
        """Serve delivery callbacks until the monotonic time ``until`` or until ``stop`` is set."""
        while (left := until - time.monotonic()) > 0 and not stop.is_set():
            self.publisher.poll(min(left, 0.1))

    def flush(self, timeout_s: float) -> None:
        """Wait for every queued record; the summary counts deliveries, and what is left as errors."""
        remaining = self.publisher.flush(timeout_s)
        self.summary.delivered = self.publisher.delivered
        self.summary.errors = self.publisher.failed + remaining


def produce_events(
    settings: ProducerSettings,
    events: Iterable[SimEvent],
    rate: float = 0.0,
    *,
    topic: str | None = None,
    labels_topic: str | None = "",
    label_delay_s: float | None = 0.0,
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
            the event time plus this delay. Labels still pending at the end are waited for. None:
            each label at its simulated delay in event time (:class:`LabelSchedule`; days late, some
            never), sent once the stream reaches it; those known after the last payment are sent
            at the end, carrying their own ``labelled_at``.
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
    if label_delay_s is not None and label_delay_s < 0:
        raise ConfigError(f"label_delay_s must be >= 0, got {label_delay_s:g}")
    summary = ProduceSummary()
    topic = topic or settings.PRODUCER_TOPIC
    labels_to = settings.labels_topic if labels_topic == "" else labels_topic
    publisher = _Publisher(settings, topic, labels_to, summary)
    labels = _LabelSender(publisher, bool(labels_to), label_delay_s)
    delay_ms = None if label_delay_s is None else round(label_delay_s * 1000)
    writer = StreamFileWriter(avro_file, sim_config, delay_ms or 0) if avro_file else None
    bar = tqdm(total=total, unit="ev", disable=not progress, mininterval=0.5, dynamic_ncols=True)
    pacer = _Pacer(rate, speed)
    stop = stop or threading.Event()
    started = time.monotonic()
    deadline = started + max_seconds if max_seconds is not None else None
    try:
        _send_stream(events, pacer, deadline, publisher, labels, writer, bar, stop)
        labels.finish(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if stop.is_set():
            summary.interrupted = True
            log.warning("interrupted: flushing what was sent")
        bar.close()
        labels.count_unsent()
        if writer:
            writer.close()
            summary.file_events = writer.count
        publisher.flush(FLUSH_TIMEOUT_S)
        summary.elapsed_s = time.monotonic() - started
    return summary


def _send_stream(
    events: Iterable[SimEvent],
    pacer: _Pacer,
    deadline: float | None,
    publisher: _Publisher,
    labels: _LabelSender,
    writer: StreamFileWriter | None,
    bar: tqdm[Any],
    stop: threading.Event,
) -> None:
    """Send each payment at its paced time, with its labels as they fall due, until the stream, the
    deadline or ``stop`` ends it; a payment whose time is past the deadline is not sent."""
    summary = publisher.summary
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
        labels.after_event(event, headers)
        bar.update(1)


class _LabelSender:
    """The labels of the payments sent: at a fixed wall-clock delay after their payment (``delay_s``), or
    at their simulated delay in event time (``delay_s`` None, :class:`LabelSchedule`). One place owns
    both queues so the end of a run, interrupted or not, can count what was never sent."""

    def __init__(self, publisher: _Publisher, enabled: bool, delay_s: float | None) -> None:
        self.publisher = publisher
        self.summary = publisher.summary
        self.enabled = enabled
        self.delay_s = delay_s
        self.pending: deque[tuple[float, SimEvent, Headers]] = deque()
        self.schedule = LabelSchedule()

    def after_event(self, event: SimEvent, headers: Headers) -> None:
        """Queue the label of the payment just sent and send the labels now due."""
        if not self.enabled:
            return
        if self.delay_s is None:
            self.schedule.add(event, headers)
            for due_event, due_headers in self.schedule.due(event.txn.event_time):
                self.publisher.send_label(due_event, None, due_headers)
                self.summary.labels += 1
        else:
            self.pending.append((time.monotonic() + self.delay_s, event, headers))
            self._send_pending(self.delay_s, time.monotonic())

    def finish(self, stop: threading.Event) -> None:
        """After the last payment: send the labels known only later (event time), and wait out the
        wall-clock delay of those still pending, unless ``stop`` is set."""
        if len(self.schedule) and not stop.is_set():
            self.summary.labels_after_end = len(self.schedule)
            for due_event, due_headers in self.schedule.rest():
                self.publisher.send_label(due_event, None, due_headers)
                self.summary.labels += 1
        if self.pending and self.delay_s is not None:
            log.info(
                "waiting %.1f s for %d pending labels (chargeback delay)", self.delay_s, len(self.pending)
            )
            self.publisher.wait(self.pending[-1][0], stop)
            if not stop.is_set():
                self._send_pending(self.delay_s, float("inf"))

    def count_unsent(self) -> None:
        """Record in the summary the labels still queued and those that never arrive."""
        self.summary.labels_pending = len(self.pending) + len(self.schedule)
        self.summary.labels_missing = self.schedule.missing

    def _send_pending(self, delay_s: float, now: float) -> None:
        while self.pending and self.pending[0][0] <= now:
            _, event, headers = self.pending.popleft()
            self.publisher.send_label(event, round(delay_s * 1000), headers)
            self.summary.labels += 1
