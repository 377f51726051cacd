"""The job's Python operators, thin glue around ``fraud_core`` (all run in THREAD mode):

``FeaturesFunction``  keyed by the Kafka record key (the user id): decode + validate, the user's
                      velocity and days of spending from keyed state; bad records to the
                      dead-letter side output
``LabelsFunction``    the labels source: decode, then re-key each fraud label by its merchant
                      (main output) and by its card (side output)
``EntityFunction``    keyed by merchant, then (a second instance) by card: payments and labels of
                      that entity meet in one keyed state (``fraud_core.entities``)
``ScoringFunction``   keyed by scoring shard (one per subtask): events wait in keyed ListState
                      until the shard holds ``batch_max`` events or ``linger_ms`` passed, then
                      one Redis round trip and one scoring call decide the whole batch

Each entity's state lives on exactly one subtask: every hop is a Flink key_by on that entity.

Buffered events live in Flink state, so a checkpoint taken while they wait includes them and a
restore scores them: nothing waits in plain Python memory, which PyFlink never snapshots.

Events cross between operators as ``marshal`` bytes of plain tuples (typed as bytes for Flink):
one serialization per hop, about ten times cheaper than PyFlink's cloudpickle
of a Python object. Both operators emit, for the sinks, rows of ``(topic, k, v, headers)``:
already-encoded Kafka records that the SQL sinks only route by topic.
"""

from __future__ import annotations

import logging
import marshal
import time
from collections.abc import Iterator
from typing import Any
from zlib import crc32

from pyflink.common import Row, Time, Types
from pyflink.datastream import (
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import ListStateDescriptor, StateTtlConfig, ValueStateDescriptor

import schemas
from flink_jobs import jvm_decode
from flink_jobs.resume import Decided, Resume, already_decided
from flink_jobs.settings import OperatorSecrets
from fraud_core.decision import BlocklistPolicy
from fraud_core.enrichment import ProfileStore
from fraud_core.entities import CardState, MerchantState, UserState
from fraud_core.exceptions import DecodeError, RegistryUnavailable
from fraud_core.feature_catalog import DAY_MS
from fraud_core.kafka.headers import correlation_id, propagated
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.labels import Label, decode_label
from fraud_core.registry import RegistryClient
from fraud_core.rules import WatchedRules
from fraud_core.scoring_client import BatchScorer, CircuitBreaker
from fraud_core.scoring_step import Intake, ScoringStep
from fraud_core.settings import ConnectionSettings
from fraud_core.transaction import DEFAULT_EVENT_TIME_BOUNDS, EventTimeBounds, Transaction

log = logging.getLogger(__name__)

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
KAFKA_ROW = Types.ROW_NAMED(
    ["topic", "k", "v", "headers"], [Types.STRING(), BYTES, BYTES, Types.MAP(Types.STRING(), BYTES)]
)
# A Kafka record as the SQL source reads it.
SOURCE_RECORD = Types.ROW_NAMED(
    ["k", "v", "partition", "offset", "headers", "topic"],
    [BYTES, BYTES, Types.INT(), Types.LONG(), Types.MAP(Types.STRING(), BYTES), Types.STRING()],
)
# What crosses a keyed hop: the next key (merchant, card: a string; scoring shard: an int), then the
# marshalled event or label.
KEYED_EVENT = Types.ROW([Types.STRING(), BYTES])
SHARDED_EVENT = Types.ROW([Types.INT(), BYTES])
DLQ_TAG = OutputTag("dead-letters", KAFKA_ROW)
CARD_LABELS_TAG = OutputTag("card-labels", KEYED_EVENT)
STAGE = "scoring-job"
KEY_MISMATCH = "KEY_MISMATCH"
END_OF_INPUT = 2**63 - 1  # Long.MAX_VALUE: the watermark a bounded source emits when it ends


def state_ttl(days: int) -> StateTtlConfig:
    """Keyed state expires ``days`` after its last write (processing time: an idle key's memory)."""
    return (
        StateTtlConfig.new_builder(Time.milliseconds(days * DAY_MS))
        .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
        .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
        # Background cleanup spelled out: PyFlink 2.2's default adds a RocksDB compaction
        # strategy whose Duration needs a py4j gateway, so in THREAD mode the operator would
        # start a second JVM just to build it. Incremental cleanup is the heap backend's way.
        .disable_cleanup_in_background()
        .cleanup_incrementally(2, False)
        .build()
    )


def _pickled_state(runtime_context: RuntimeContext, name: str, ttl_days: int) -> Any:
    # PICKLED_BYTE_ARRAY: THREAD mode converts it with the C pickle; a byte-array type would be
    # converted element by element.
    descriptor = ValueStateDescriptor(name, Types.PICKLED_BYTE_ARRAY())
    descriptor.enable_time_to_live(state_ttl(ttl_days))
    return runtime_context.get_state(descriptor)


def _row(record: tuple[str, bytes, bytes, dict[str, bytes]]) -> Row:
    topic, key, value, headers = record
    return Row(topic=topic, k=key, v=value, headers=headers)


class FeaturesFunction(KeyedProcessFunction):  # type: ignore[misc]  # pyflink is untyped
    """Decode, validate and compute the user's features, keyed by the record key (docs/INTERFACES.md: the user id).

    Emits ``Row(merchant_id, event)`` for the merchant hop. A rewound event that the last run
    already decided still goes on (flagged as decided), so the merchant's and the card's state
    count it as the last run did; the card hop drops it.

    A record whose key is not its ``user_id`` is dead-lettered as ``KEY_MISMATCH``: its velocity
    would be computed from another key's history, and per-user order would not hold in Kafka either.
    """

    def __init__(
        self,
        registry_url: str,
        dlq_topic: str,
        time_bounds: EventTimeBounds = DEFAULT_EVENT_TIME_BOUNDS,
        resume: Resume | None = None,
        bootstrap_servers: str = "",
        *,
        decoded_in_jvm: bool = False,
    ) -> None:
        self.registry_url = registry_url
        # DECODE_IN=jvm: rows carry the Java decoder's result next to the bytes (flink_jobs/jvm_decode.py).
        self.decoded_in_jvm = decoded_in_jvm
        self.dlq_topic = dlq_topic
        self.time_bounds = time_bounds
        self.resume = resume
        self.bootstrap_servers = bootstrap_servers

    def open(self, runtime_context: RuntimeContext) -> None:
        registry = RegistryClient(self.registry_url)
        dead_letters = AvroSerializer(registry, schemas.DEAD_LETTER)
        self.intake = Intake(registry, dead_letters, self.dlq_topic, STAGE, self.time_bounds)
        self.intake.prepare()
        # Started without a checkpoint on rewound offsets: what the last run published is skipped.
        self.decided = Decided()
        if self.resume is not None:
            # Security settings (and the password) from the TaskManager's environment, never the graph.
            conf = ConnectionSettings(KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers).kafka.librdkafka()
            self.decided = already_decided(conf, registry, self.resume, self.dlq_topic)
            log.warning(
                "resuming: %d decisions and %d dead letters of rewound events are already published",
                len(self.decided.event_ids),
                len(self.decided.dead),
            )
        self.resumed_partitions: set[int] = set()
        # A user's days of spending reach back 30 days.
        self.state = _pickled_state(runtime_context, "user", USER_TTL_DAYS)
        group = runtime_context.get_metrics_group().add_group("fraud")
        self.events_in = group.counter("events_in")
        self.already_decided = group.counter("resume_already_decided")
        self.dlq_group = group
        # A metric update is a call into Java; events are counted here and published every second.
        self.uncounted = 0
        self.counted_at = time.monotonic()

    def process_element(self, row: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        self.uncounted += 1
        if time.monotonic() - self.counted_at >= 1.0:
            self.events_in.inc(self.uncounted)
            self.uncounted = 0
            self.counted_at = time.monotonic()
        headers = propagated(row["headers"])
        key: bytes | None = row["k"]
        value: bytes | None = row["v"]
        source = (row["topic"], row["partition"], row["offset"])
        rewound = self.resume is not None and self.resume.may_be_decided(source[1], source[2])
        if rewound and (source[1], source[2]) in self.decided.dead:
            self.already_decided.inc()
            return
        try:
            if self.decoded_in_jvm:
                txn = jvm_decode.transaction(row["decoded"], self.time_bounds)
            else:
                txn = self.intake.decode(value)
            if key is None or key != txn.user_id.encode():
                raise DecodeError(
                    KEY_MISMATCH,
                    f"record key {key!r} is not the user_id {txn.user_id!r}: keys must be the user_id "
                    "(per-user order and velocity state depend on it)",
                )
        except RegistryUnavailable:
            log.error(
                "schema registry unavailable decoding %s[%d]@%d correlation_id=%s: failing the task, "
                "the job restarts from its last checkpoint (the record is not dead-lettered)",
                *source,
                correlation_id(headers),
            )
            raise
        except DecodeError as exc:
            self.dlq_group.add_group("dlq", exc.error_type).counter("records").inc()
            log.warning(
                "dead letter %s[%d]@%d correlation_id=%s: %s %s",
                *source,
                correlation_id(headers),
                exc.error_type,
                exc,
            )
            yield DLQ_TAG, _row(self.intake.dead_letter(source, key, value, exc, headers))
            return
        user = UserState.from_state(self.state.value())
        features = user.observe(txn)
        self.state.update(user.to_state())
        decided = False
        if rewound:
            decided = txn.event_id in self.decided.event_ids
            if decided:
                self.already_decided.inc()  # it still counts for the user's, merchant's and card's next events
            else:
                self._first_undecided(source)
        yield Row(txn.merchant_id, marshal.dumps((txn.fields(), headers, features, decided)))

    def _first_undecided(self, source: tuple[str, int, int]) -> None:
        """Say where, in each partition, the rewound events stop being already decided."""
        topic, partition, offset = source
        if partition in self.resumed_partitions or self.resume is None:
            return
        self.resumed_partitions.add(partition)
        if offset == self.resume.start.get(partition) and partition in self.resume.limited:
            log.warning(
                "%s[%d]@%d, the first rewound event, was never published: the last run may have lost "
                "events before it too; raise RESUME_REWIND_RECORDS and restart to find them",
                topic,
                partition,
                offset,
            )
        else:
            log.warning("%s[%d]: deciding the events the last run did not publish from @%d on", *source)


USER_TTL_DAYS = 31


class LabelsFunction(ProcessFunction):  # type: ignore[misc]  # pyflink is untyped
    """Decode ``payments.labels`` and send each fraud label to its merchant and to its card.

    A label that cannot be decoded is dead-lettered with its reason; a legitimate label, or one
    without the merchant or the card, feeds nothing (counted as ``labels_unused``)."""

    def __init__(self, registry_url: str, dlq_topic: str) -> None:
        self.registry_url = registry_url
        self.dlq_topic = dlq_topic

    def open(self, runtime_context: RuntimeContext) -> None:
        self.registry = RegistryClient(self.registry_url)
        dead_letters = AvroSerializer(self.registry, schemas.DEAD_LETTER)
        self.intake = Intake(self.registry, dead_letters, self.dlq_topic, STAGE)
        self.intake.prepare()
        group = runtime_context.get_metrics_group().add_group("fraud")
        self.labels_in = group.counter("labels_in")
        self.labels_unused = group.counter("labels_unused")
        self.labels_dead = group.counter("labels_dead_lettered")

    def process_element(self, row: Row, ctx: ProcessFunction.Context) -> Iterator[Any]:
        self.labels_in.inc()
        value: bytes | None = row["v"]
        source = (row["topic"], row["partition"], row["offset"])
        try:
            label = Label.from_record(decode_label(value, self.registry.parsed_schema))
        except DecodeError as exc:
            self.labels_dead.inc()
            headers = propagated(row["headers"])
            log.warning("dead letter %s[%d]@%d: label %s %s", *source, exc.error_type, exc)
            yield DLQ_TAG, _row(self.intake.dead_letter(source, row["k"], value, exc, headers))
            return
        if not label.is_fraud or not (label.merchant_id or label.card_id):
            self.labels_unused.inc()
            return
        packed = marshal.dumps(label.fields())
        if label.merchant_id:
            yield Row(label.merchant_id, packed)
        if label.card_id:
            yield CARD_LABELS_TAG, Row(label.card_id, packed)


class EntityFunction(KeyedCoProcessFunction):  # type: ignore[misc]  # pyflink is untyped
    """One entity's state (merchant or card, :mod:`fraud_core.entities`): payments on the first
    input gain its features and go on, keyed by the next hop's key; labels on the second input
    only update it."""

    def __init__(self, entity: str, label_delay_ms: int, shard_keys: list[int] | None = None) -> None:
        self.entity = entity
        self.label_delay_ms = label_delay_ms
        self.shard_keys = shard_keys  # the last hop (card) keys by scoring shard

    def open(self, runtime_context: RuntimeContext) -> None:
        self.kind = MerchantState if self.entity == "merchant" else CardState
        ttl_days = 31 + -(-self.label_delay_ms // DAY_MS) + 1
        self.state = _pickled_state(runtime_context, self.entity, ttl_days)

    def process_element1(self, event: bytes, ctx: KeyedCoProcessFunction.Context) -> Iterator[Row]:
        fields, headers, features, decided = marshal.loads(event)
        txn = Transaction(*fields)
        state = self.kind.from_state(self.label_delay_ms, self.state.value())
        features.update(state.observe(txn, features))
        self.state.update(state.to_state())
        if self.shard_keys is None:
            yield Row(txn.card_id, marshal.dumps((fields, headers, features, decided)))
        elif not decided:
            shard = self.shard_keys[crc32(txn.user_id.encode()) % len(self.shard_keys)]
            yield Row(shard, marshal.dumps((fields, headers, features)))

    def process_element2(self, label: bytes, ctx: KeyedCoProcessFunction.Context) -> Iterator[Row]:
        state = self.kind.from_state(self.label_delay_ms, self.state.value())
        state.frauds.learn(Label(*marshal.loads(label)))
        self.state.update(state.to_state())
        return iter(())


class Linger:
    """How long a shard's first event waits for company: longer as the input gets faster.

    At low rates a batch of one costs CPU nobody needs, so events leave after ``min_ms``. At high
    rates each scoring request's fixed cost (about a millisecond of CPU between client and
    service, see ``stage_costs_us``) dominates, so waiting a little longer buys much larger
    batches: ``min_ms`` plus ``per_keps_ms`` per 1,000 events/s of the shard's recent rate, at most
    ``max_ms``. The rate is a moving average over flushes.
    """

    def __init__(self, min_ms: int, max_ms: int, per_keps_ms: float = 4.0) -> None:
        self.min_ms = min_ms
        self.max_ms = max(min_ms, max_ms)
        self.per_keps_ms = per_keps_ms
        self.rate_eps = 0.0
        self._last_flush_ms: int | None = None

    def flushed(self, events: int, now_ms: int) -> None:
        if self._last_flush_ms is not None:
            sample = events * 1000 / max(now_ms - self._last_flush_ms, 1)
            self.rate_eps = 0.7 * self.rate_eps + 0.3 * sample
        self._last_flush_ms = now_ms

    def delay_ms(self) -> int:
        return min(self.max_ms, round(self.min_ms + self.rate_eps / 1000 * self.per_keps_ms))


class ScoringFunction(KeyedProcessFunction):  # type: ignore[misc]  # pyflink is untyped
    """Micro-batches events per shard in keyed ListState, then decides each batch in one go.

    A batch closes when the shard holds ``batch_max`` events, or a :class:`Linger` after its first
    event (a processing-time timer, which Flink checkpoints with the state), or when a bounded
    input ends (an event-time timer at the final watermark). The Redis and HTTP
    calls block this operator's thread for a few milliseconds per batch; meanwhile events queue in
    Flink's network buffers, so under load batches grow by themselves and per-event cost falls.
    The service's back-pressure is Flink's: a slow call slows the reading of the input.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        # Plain, non-secret values only (scoring_job.score_config): this object is pickled into
        # the job graph.
        self.config = config

    def open(self, runtime_context: RuntimeContext) -> None:
        c = self.config
        # Secrets come from this TaskManager's environment, never from the pickled config.
        secrets = OperatorSecrets()
        registry = RegistryClient(c["registry_url"])
        self.step = ScoringStep(
            store=ProfileStore(secrets.redis_url(c["redis_url"]), timeout_s=c["redis_timeout_ms"] / 1000),
            scorer=BatchScorer(
                c["scoring_url"],
                secrets.api_key,
                timeout_s=c["scoring_timeout_ms"] / 1000,
                retries=c["scoring_retries"],
                breaker=CircuitBreaker(),
            ),
            # Unvalidated on purpose: see ScoringStep.
            serializer=AvroSerializer(registry, schemas.DECISION, validate=False),
            flagged_topic=c["flagged_topic"],
            approved_topic=c["approved_topic"],
            # Reloaded when the file changes (checked at most once a second): no restart needed.
            rules=WatchedRules(c.get("rules_file") or None),
            blocklist_policy=BlocklistPolicy(
                c.get("blocklist_when_unavailable", "closed"), c.get("blocklist_closed_above_eur", 100.0)
            ),
        )
        self.step.prepare()
        self.batch_max: int = c["batch_max"]
        self.linger: dict[Any, Linger] = {}
        self.linger_ms = (c["linger_ms"], c["linger_max_ms"])
        self.pending = runtime_context.get_list_state(
            ListStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY())
        )
        # Events added per shard since its last flush. Only a hint for the size trigger: after a
        # restore it starts at 0 while the restored timer still flushes what the state holds.
        self.counts: dict[Any, int] = {}
        group = runtime_context.get_metrics_group().add_group("fraud")
        self.flagged = group.counter("decisions_flagged")
        self.approved = group.counter("decisions_approved")
        self.degraded = group.counter("decisions_degraded")
        self.batches = group.counter("scoring_batches")
        self.malformed_profiles = group.counter("profiles_malformed")
        self.batch_size = group.distribution("scoring_batch_size")
        self.scoring_ms = group.distribution("scoring_latency_ms")
        self.enrichment_ms = group.distribution("enrichment_latency_ms")
        # Counter updates are calls into Java: summed here, published at most once a second.
        self.unpublished = [0, 0, 0, 0, 0]  # flagged, approved, degraded, batches, malformed profiles
        self.published_at = time.monotonic()

    def process_element(self, event: bytes, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        shard = ctx.get_current_key()
        self.pending.add(event)
        n = self.counts.get(shard, 0) + 1
        self.counts[shard] = n
        if n == 1:
            timers = ctx.timer_service()
            linger = self.linger.get(shard) or self.linger.setdefault(shard, Linger(*self.linger_ms))
            timers.register_processing_time_timer(timers.current_processing_time() + linger.delay_ms())
            # Flink drops pending processing-time timers when a bounded input (a replay with
            # STOP_AT) ends, but fires every event-time timer on the final watermark: this one
            # flushes the last batch then, and never earlier (the job sets no watermarks).
            timers.register_event_time_timer(END_OF_INPUT)
        elif n >= self.batch_max:
            yield from self._flush(shard)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        yield from self._flush(ctx.get_current_key())

    def _flush(self, shard: Any) -> Iterator[Row]:
        self.counts[shard] = 0
        raw = list(self.pending.get() or ())
        if not raw:
            return
        linger = self.linger.get(shard)
        if linger is not None:
            linger.flushed(len(raw), time.time_ns() // 1_000_000)
        self.pending.clear()
        events = [marshal.loads(r) for r in raw]
        outcome = self.step.run(
            [Transaction(*e[0]) for e in events], [e[2] for e in events], [e[1] for e in events]
        )
        n = len(events)
        self.batch_size.update(n)
        self.enrichment_ms.update(int(outcome.enrichment_s * 1000))
        self.scoring_ms.update(int(outcome.scoring_s * 1000))
        counts = self.unpublished
        counts[0] += outcome.flagged
        counts[1] += n - outcome.flagged
        counts[2] += outcome.degraded
        counts[3] += 1
        counts[4] += outcome.malformed_profiles
        if time.monotonic() - self.published_at >= 1.0:
            for counter, value in zip(
                (self.flagged, self.approved, self.degraded, self.batches, self.malformed_profiles),
                counts,
                strict=True,
            ):
                if value:
                    counter.inc(value)
            self.unpublished = [0, 0, 0, 0, 0]
            self.published_at = time.monotonic()
        for record in outcome.records:
            yield _row(record)

    def close(self) -> None:
        self.step.scorer.close()  # type: ignore[attr-defined]
        self.step.store.close()  # type: ignore[attr-defined]
