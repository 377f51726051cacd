"""The job's Python operators. Each is thin glue around the pure functions in ``fraud_core``:

``DecodeFunction``     raw Kafka record -> validated Transaction, or a dead letter (side output)
``VelocityFunction``   keyed by user: velocity features from Flink keyed state (TTL-bounded)
``ScoreFunction``      async: coalesces events into batches -> Redis enrichment -> scoring -> decision

Every operator emits, for the sinks, rows of ``(topic, k, v, headers)``: already-encoded Kafka
records. The SQL sinks only route them by topic, so the Java side never needs our schemas.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import astuple
from typing import Any

from pyflink.common import Row, Time, Types
from pyflink.datastream import (
    AsyncFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

import schemas
from fraud_core import avro
from fraud_core.decision import decide, topic_for
from fraud_core.enrichment import ProfileStore
from fraud_core.exceptions import DecodeError
from fraud_core.features import ALLOWED_LATENESS_MS, HORIZON_MS, VelocityState, build_features
from fraud_core.registry import RegistryClient
from fraud_core.scoring_client import BatchScorer, CircuitBreaker
from fraud_core.transaction import Transaction, validate

log = logging.getLogger(__name__)

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
KAFKA_ROW = Types.ROW_NAMED(
    ["topic", "k", "v", "headers"], [Types.STRING(), BYTES, BYTES, Types.MAP(Types.STRING(), BYTES)]
)
DLQ_TAG = OutputTag("dead-letters", KAFKA_ROW)
PROPAGATED_HEADERS = ("correlation_id", "traceparent")


# A decoded event on its way through the job: (transaction fields, headers, "topic[p]@offset",
# velocity features or None). Plain tuples, not dataclasses: they cross operators pickled, and
# cloudpickle is several times slower on instances of our classes than on builtin types.
Event = tuple[tuple[Any, ...], dict[str, bytes], str, dict[str, float] | None]


def event_key(event: Event) -> str:
    """The key of the velocity state: the user id."""
    return str(event[0][1])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _propagated(headers: dict[str, bytes] | None) -> dict[str, bytes]:
    return {k: v for k, v in (headers or {}).items() if k in PROPAGATED_HEADERS and v is not None}


def _correlation_id(headers: dict[str, bytes]) -> str:
    raw = headers.get("correlation_id")
    return raw.decode("utf-8", "replace") if raw else ""


class _Encoder:
    """Looks up the registered schema ids of the output subjects once, then encodes records."""

    def __init__(self, registry_url: str) -> None:
        self.registry = RegistryClient(registry_url)
        self._ids: dict[str, int] = {}

    def schema_id(self, topic: str, schema_name: str) -> int:
        if topic not in self._ids:
            self._ids[topic] = self.registry.lookup_id(f"{topic}-value", schemas.load_text(schema_name))
        return self._ids[topic]

    def encode(self, topic: str, schema_name: str, record: dict[str, Any]) -> bytes:
        return avro.encode(self.schema_id(topic, schema_name), schemas.load(schema_name), record)


class DecodeFunction(ProcessFunction):
    """Decodes and validates; anything that fails goes to the dead-letter side output, never lost."""

    def __init__(self, registry_url: str, dlq_topic: str) -> None:
        self.registry_url = registry_url
        self.dlq_topic = dlq_topic

    def open(self, runtime_context: RuntimeContext) -> None:
        self.encoder = _Encoder(self.registry_url)
        self.encoder.schema_id(
            self.dlq_topic, schemas.DEAD_LETTER
        )  # fail at start, not on the first bad record
        self.reader = schemas.load(schemas.TRANSACTION)
        group = runtime_context.get_metrics_group().add_group("fraud")
        self.events_in = group.counter("events_in")
        self.dlq_group = group

    def process_element(self, row: Row, ctx: ProcessFunction.Context):  # type: ignore[no-untyped-def]
        self.events_in.inc()
        headers = row["headers"] or {}
        source = f"{row['topic']}[{row['partition']}]@{row['offset']}"
        try:
            record = avro.decode(row["v"], self.encoder.registry.parsed_schema, self.reader)
            txn = validate(record)
        except DecodeError as exc:
            self.dlq_group.add_group("dlq", exc.error_type).counter("records").inc()
            log.warning(
                "dead letter %s correlation_id=%s: %s %s",
                source,
                _correlation_id(headers),
                exc.error_type,
                exc,
            )
            envelope = {
                "source_topic": row["topic"],
                "source_partition": row["partition"],
                "source_offset": row["offset"],
                "key": row["k"],
                "value": row["v"],
                "error_type": exc.error_type,
                "error_message": str(exc),
                "failed_at": now_ms(),
                "stage": "scoring-job",
                "correlation_id": _correlation_id(headers) or None,
            }
            value = self.encoder.encode(self.dlq_topic, schemas.DEAD_LETTER, envelope)
            yield DLQ_TAG, Row(topic=self.dlq_topic, k=row["k"], v=value, headers=_propagated(headers))
            return
        yield astuple(txn), _propagated(headers), source, None


class VelocityFunction(KeyedProcessFunction):
    """Per-user velocity features in event time, from keyed state that expires with the longest window."""

    def open(self, runtime_context: RuntimeContext) -> None:
        ttl = (
            StateTtlConfig.new_builder(Time.milliseconds(HORIZON_MS + ALLOWED_LATENESS_MS))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .build()
        )
        descriptor = ValueStateDescriptor("velocity", Types.PICKLED_BYTE_ARRAY())
        descriptor.enable_time_to_live(ttl)
        self.state = runtime_context.get_state(descriptor)

    def process_element(self, event: Event, ctx: KeyedProcessFunction.Context):  # type: ignore[no-untyped-def]
        velocity = VelocityState.from_state(self.state.value())
        features = velocity.observe(Transaction(*event[0]))
        self.state.update(velocity.to_state())
        yield event[0], event[1], event[2], features


class ScoreFunction(AsyncFunction):
    """Coalesces concurrent events into one Redis round trip and one scoring request per batch.

    Flink bounds the events in flight (the async operator's capacity), which is the back-pressure:
    when the service is slow, the queue fills and upstream waits; nothing buffers without bound.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def open(self, runtime_context: RuntimeContext) -> None:
        c = self.config
        self.encoder = _Encoder(c["registry_url"])
        for topic in (c["flagged_topic"], c["approved_topic"]):
            self.encoder.schema_id(topic, schemas.DECISION)
        self.store = ProfileStore(c["redis_url"], timeout_s=c["redis_timeout_ms"] / 1000)
        self.scorer = BatchScorer(
            c["scoring_url"],
            c["api_key"],
            timeout_s=c["scoring_timeout_ms"] / 1000,
            retries=c["scoring_retries"],
            breaker=CircuitBreaker(),
        )
        self.batch_max = c["batch_max"]
        self.linger_s = c["linger_ms"] / 1000
        self.queue: asyncio.Queue[tuple[Event, asyncio.Future[list[Row]]]] | None = None
        group = runtime_context.get_metrics_group().add_group("fraud")
        self.flagged = group.counter("decisions_flagged")
        self.approved = group.counter("decisions_approved")
        self.degraded = group.counter("decisions_degraded")
        self.batches = group.counter("scoring_batches")
        self.batch_size = group.distribution("scoring_batch_size")
        self.scoring_ms = group.distribution("scoring_latency_ms")
        self.enrichment_ms = group.distribution("enrichment_latency_ms")

    async def async_invoke(self, value: Event) -> list[Row]:
        loop = asyncio.get_running_loop()
        if self.queue is None:
            self.queue = asyncio.Queue()
            self._batcher = loop.create_task(self._run_batches())
        future: asyncio.Future[list[Row]] = loop.create_future()
        self.queue.put_nowait((value, future))
        return await future

    async def _run_batches(self) -> None:
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            if self.linger_s and self.queue.qsize() < self.batch_max:
                await asyncio.sleep(self.linger_s)
            while len(batch) < self.batch_max and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            task = asyncio.get_running_loop().create_task(self._score(batch))
            task.add_done_callback(lambda t: t.exception())  # failures are delivered to the futures

    async def _score(self, batch: list[tuple[Event, asyncio.Future[list[Row]]]]) -> None:
        try:
            rows = await self._decide([event for event, _ in batch])
        except Exception as exc:  # surface to Flink: the job restarts from its last checkpoint
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        for (_, future), row in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result([row])

    async def _decide(self, events: list[Event]) -> list[Row]:
        txns = [Transaction(*e[0]) for e in events]
        enrichment = await self.store.fetch([t.user_id for t in txns], [t.card_id for t in txns])
        self.enrichment_ms.update(int(enrichment.latency_s * 1000))
        features = [
            build_features(t, e[3] or {}, profile)
            for t, e, profile in zip(txns, events, enrichment.profiles, strict=True)
        ]
        correlation = _correlation_id(events[0][1]) or uuid.uuid4().hex
        t0 = time.perf_counter()
        results = await self.scorer.score(list(zip(txns, features, strict=True)), correlation)
        self.scoring_ms.update(int((time.perf_counter() - t0) * 1000))
        self.batches.inc()
        self.batch_size.update(len(events))
        decided_at = now_ms()
        rows = []
        c = self.config
        for txn, event, feats, result, blocked in zip(
            txns, events, features, results, enrichment.blocklisted, strict=True
        ):
            record = decide(txn, feats, result, blocked, enrichment.degraded, decided_at)
            topic = topic_for(record, c["flagged_topic"], c["approved_topic"])
            (self.flagged if topic == c["flagged_topic"] else self.approved).inc()
            if record["degraded"]:
                self.degraded.inc()
            value = self.encoder.encode(topic, schemas.DECISION, record)
            rows.append(Row(topic=topic, k=txn.user_id.encode(), v=value, headers=event[1]))
        return rows

    def close(self) -> None:
        # The event loop is stopped by Flink right after; connections die with the worker.
        self.queue = None
