"""Kafka glue: consume decisions, apply their actions through :mod:`fraud_core.action_store`, audit, commit.

Per poll the consumer handles a batch of records in order, then flushes the audit and dead-letter
records it produced (idempotent producer, ``acks=all``), marks the events done, and commits the
offsets synchronously. Offsets therefore move only past records whose actions are complete. When a
dependency fails (:class:`TransientError`), what was handled is finished and committed, the rest of
the batch is rewound with ``seek`` and retried after a back-off: delayed, never skipped.

A flagged decision's notification is only queued here (:mod:`actions.outbox`); a thread of its own
delivers it, retries it with back-off and dead-letters it at last. A failing webhook never rewinds
a batch, so it never holds up a later decision's block, hold, profile update or case.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

import schemas
from actions.exceptions import ActionsError
from actions.metrics import Metrics
from actions.notify import Notifier, notifier_for
from actions.outbox import NotificationDispatcher, NotificationOutbox, wall_clock_ms
from actions.settings import ConsumerSettings
from fraud_core.action_logic import (
    Decision,
    audit_records,
    millis,
    notification,
    parse_decision,
    plan_actions,
)
from fraud_core.action_store import ActionStore, Outcome
from fraud_core.cards import mask_card
from fraud_core.clock import now_ms
from fraud_core.exceptions import DecodeError, RegistryUnavailable, SerializationError, TransientError
from fraud_core.features import Profile
from fraud_core.kafka.dead_letter import dead_letter_record
from fraud_core.kafka.headers import correlation_id, propagated
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroDeserializer, AvroSerializer
from fraud_core.registry import RegistryClient
from fraud_core.service import PollingService

log = logging.getLogger(__name__)

STAGE = "action-consumer"
LAG_INTERVAL_S = 5.0
FLUSH_TIMEOUT_S = 30.0
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def _coordinates(msg: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed record (always set on one without error)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


@dataclass
class _Batch:
    """What one poll handled: offsets to commit, events to mark done."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    acted: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


class ActionConsumer(PollingService):
    """Acts on ``payments.flagged`` and ``payments.approved``; run it with :meth:`run` or :meth:`poll_once`.

    Args:
        settings: topics, group, connections and TTLs.
        notifier: how flagged decisions are notified; by default from ``NOTIFY_WEBHOOK_URL``.
        metrics: where metrics go; by default a fresh registry, which :meth:`run` serves on
            ``ACTIONS_METRICS_PORT``.
    Raises:
        RegistryError: the output subjects have no registered schema (run ``make up`` first).
    """

    def __init__(
        self, settings: ConsumerSettings, notifier: Notifier | None = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.notifier = notifier or notifier_for(settings.NOTIFY_WEBHOOK_URL, settings.NOTIFY_TIMEOUT_S)
        self.metrics = metrics or Metrics()
        super().__init__(settings.ACTIONS_METRICS_PORT, self.metrics.registry, log)
        self.registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
        self._deserialize = AvroDeserializer(self.registry.parsed_schema, schemas.DECISION)
        self._audits = AvroSerializer(self.registry, schemas.ACTION)
        self._dead_letters = AvroSerializer(self.registry, schemas.DEAD_LETTER)
        # Resolve the output schema ids now: a missing subject fails at start, not on the first record.
        self._audits.schema_id(settings.ACTIONS_TOPIC)
        self._dead_letters.schema_id(settings.DLQ_TOPIC)
        self.store = ActionStore(
            settings.redis_connect_url,
            settings.BLOCK_TTL_S,
            settings.IDEMPOTENCY_TTL_S,
            on_malformed_profile=self.metrics.malformed_profiles.inc,
        )
        self.consumer = Consumer(
            settings.kafka.librdkafka(
                **{
                    "group.id": settings.GROUP_ID,
                    "client.id": f"{settings.GROUP_ID}-consumer",
                    "enable.auto.commit": False,
                    "auto.offset.reset": settings.AUTO_OFFSET_RESET,
                    "isolation.level": "read_committed",
                }
            )
        )
        self.producer = Producer(
            settings.kafka.librdkafka(
                **{
                    "client.id": f"{settings.GROUP_ID}-producer",
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                }
            )
        )
        self.publisher = Publisher(self.producer, drain_s=0.1)
        # Notifications leave through a Redis outbox and a thread of their own (actions/outbox.py):
        # a failing webhook delays notifications, never the effects of later decisions.
        self.outbox = NotificationOutbox(self._redis_client(), settings.IDEMPOTENCY_TTL_S, wall_clock_ms)
        self.dispatcher = NotificationDispatcher(
            self._redis_client(),
            self.notifier,
            Producer(
                settings.kafka.librdkafka(
                    **{
                        "client.id": f"{settings.GROUP_ID}-notifier",
                        "enable.idempotence": True,
                        "acks": "all",
                    }
                )
            ),
            AvroSerializer(RegistryClient(settings.SCHEMA_REGISTRY_URL), schemas.DEAD_LETTER),
            settings.DLQ_TOPIC,
            self.metrics,
            max_attempts=settings.NOTIFY_MAX_ATTEMPTS,
            base_delay_s=settings.NOTIFY_RETRY_BASE_S,
            max_delay_s=settings.NOTIFY_RETRY_MAX_S,
            lease_s=2 * settings.NOTIFY_TIMEOUT_S + 5,
            clock_ms=wall_clock_ms,
        )
        self.consumer.subscribe(
            [settings.FLAGGED_TOPIC, settings.APPROVED_TOPIC],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        self._failures = 0
        self._lag_due = 0.0
        self._batch = _Batch()
        self.dispatcher.start()

    def _redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_connect_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )

    # Lifecycle ----------------------------------------------------------------------------------

    def describe(self) -> str:
        s = self.settings
        return (
            f"acting on {s.FLAGGED_TOPIC} and {s.APPROVED_TOPIC} as group {s.GROUP_ID} (audit -> "
            f"{s.ACTIONS_TOPIC}, dead letters -> {s.DLQ_TOPIC}, notify via {self.notifier.channel})"
        )

    def release(self) -> None:
        """Flush what is in flight, leave the group and release connections."""
        if self.consumer is None:
            return
        self.dispatcher.stop()
        self.publisher.flush(FLUSH_TIMEOUT_S)
        self.consumer.close()
        self.consumer = None  # type: ignore[assignment]
        self.store.close()
        log.info("action consumer closed")

    # One poll -----------------------------------------------------------------------------------

    def poll_once(self, timeout_s: float = 1.0) -> int:
        """Handle up to ``BATCH_MAX`` records, finish them and commit; returns how many were handled."""
        messages = self.consumer.consume(self.settings.BATCH_MAX, timeout_s)
        self._update_lag()
        messages = [m for m in messages if self._usable(m)]
        if not messages:
            return 0
        self._batch = _Batch()
        handled = 0
        failure: TransientError | None = None
        try:
            for msg in messages:
                if self._stop.is_set() and handled:
                    break  # shutting down: finish what is handled; the rest is redelivered later
                self._handle(msg)
                handled += 1
        except TransientError as exc:
            failure = exc
        try:
            self._finish()
        except TransientError as exc:
            failure, handled = exc, 0
        if failure is not None:
            self._retry_later(messages[handled:], failure)
        else:
            self._failures = 0
        return handled

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.fatal():
            raise ActionsError(f"fatal Kafka error: {err}")
        log.warning("Kafka: %s", err)
        return False

    def _handle(self, msg: Message) -> None:
        t0 = time.perf_counter()
        topic, partition, offset = _coordinates(msg)
        source = f"{topic}[{partition}]@{offset}"
        headers = propagated(msg.headers())
        correlation = correlation_id(headers)
        self.metrics.consumed.labels(topic).inc()
        try:
            record = self._decode(msg.value())
            decision = parse_decision(record)
            self._observe_delay(record)
            self._act(msg, decision, record, headers, correlation, source)
        except (DecodeError, SerializationError) as exc:
            self._dead_letter(msg, exc, headers, correlation, source)
        self._batch.offsets[(topic, partition)] = offset + 1
        self.metrics.latency.observe(time.perf_counter() - t0)

    def _observe_delay(self, record: dict[str, Any]) -> None:
        decided_at = millis(record.get("decided_at"))
        if isinstance(decided_at, int) and decided_at > 0:  # a clock behind the job's reads as 0
            self.metrics.decision_delay.observe(max(0, now_ms() - decided_at) / 1000)

    def _decode(self, value: bytes | None) -> dict[str, Any]:
        try:
            return self._deserialize(value)
        except RegistryUnavailable as exc:
            # An outage to wait out, never the record's fault (an unknown id is a DecodeError).
            raise TransientError(str(exc)) from exc

    def _act(
        self,
        msg: Message,
        decision: Decision,
        record: dict[str, Any],
        headers: dict[str, bytes],
        correlation_id: str,
        source: str,
    ) -> None:
        topic = _coordinates(msg)[0]
        if decision.event_id in self._batch.seen:
            self._skip_duplicate(decision, correlation_id, source, topic)
            return
        applied = self.store.apply(decision, self._audit_builder(decision), record, headers=headers)
        if applied.outcome is Outcome.DONE:
            self._skip_duplicate(decision, correlation_id, source, topic)
            return
        actions = [a.value for a in plan_actions(decision)]
        if applied.outcome is Outcome.NEW:  # counted once, when the effects land in Redis
            self.metrics.decisions.labels(decision.action).inc()
            for action in actions:
                self.metrics.actions.labels(action).inc()
        if decision.flagged:  # delivered by the dispatcher; only queueing can hold up this record
            self.outbox.enqueue(
                decision.event_id,
                notification(decision, correlation_id),
                headers,
                _coordinates(msg),
                msg.key(),
                msg.value(),
            )
        for record in applied.audits:
            value = self._audits.encode(self.settings.ACTIONS_TOPIC, record)
            self._produce(self.settings.ACTIONS_TOPIC, decision.user_id.encode(), value, headers)
        self._batch.seen.add(decision.event_id)
        self._batch.acted.append(decision.event_id)
        log.log(
            logging.INFO if decision.flagged else logging.DEBUG,
            "%s correlation_id=%s event %s %s user %s card %s: %s%s",
            source,
            correlation_id,
            decision.event_id,
            decision.decision,
            decision.user_id,
            mask_card(decision.card_id),
            ", ".join(actions),
            "" if applied.outcome is Outcome.NEW else " (re-sending unacknowledged audit records)",
        )

    def _audit_builder(self, decision: Decision) -> Callable[[Profile | None, Profile], list[dict[str, Any]]]:
        def build(before: Profile | None, after: Profile) -> list[dict[str, Any]]:
            records = audit_records(
                decision,
                before,
                after,
                now_ms(),
                self.settings.BLOCK_TTL_S,
                self.notifier.channel,
                self.settings.AUDIT_PROFILE_UPDATES,
            )
            for record in records:  # refuse a record that cannot be audited before any effect is applied
                self._audits.encode(self.settings.ACTIONS_TOPIC, record)
            return records

        return build

    def _skip_duplicate(self, decision: Decision, correlation_id: str, source: str, topic: str) -> None:
        self.metrics.duplicates.labels(topic).inc()
        log.info(
            "%s correlation_id=%s event %s already acted on: skipped",
            source,
            correlation_id,
            decision.event_id,
        )

    def _dead_letter(
        self,
        msg: Message,
        exc: DecodeError | SerializationError,
        headers: dict[str, bytes],
        correlation_id: str,
        source: str,
    ) -> None:
        envelope = dead_letter_record(
            _coordinates(msg), msg.key(), msg.value(), exc, STAGE, headers, error_type="AUDIT_ENCODE"
        )
        error_type = envelope["error_type"]
        self.metrics.dead_letters.labels(error_type).inc()
        log.warning("%s correlation_id=%s dead letter: %s %s", source, correlation_id, error_type, exc)
        value = self._dead_letters.encode(self.settings.DLQ_TOPIC, envelope)
        self._produce(self.settings.DLQ_TOPIC, msg.key(), value, headers)

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        try:
            self.publisher.produce(topic, key, value, headers)
        except KafkaException as exc:
            raise TransientError(f"cannot produce to {topic}: {exc}") from exc

    def _finish(self) -> None:
        """Wait for every produced record, mark the events done, commit. Raises TransientError."""
        batch = self._batch
        remaining = self.publisher.flush(FLUSH_TIMEOUT_S)
        errors = self.publisher.take_errors()
        if remaining or errors:
            problems = "; ".join(errors[:3]) or f"{remaining} records unacknowledged"
            raise TransientError(f"audit/dead-letter records not delivered: {problems}")
        if batch.acted:
            try:
                self.store.mark_done(batch.acted)
            except TransientError as exc:
                # The records are delivered; a stale marker only means a later redelivery re-sends them.
                log.warning("could not mark %d events done: %s", len(batch.acted), exc)
        if batch.offsets:
            offsets = [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # Lost the partition (rebalance): its new owner re-reads and skips them as duplicates.
                log.warning("commit of %s failed: %s", offsets, exc)
        self._batch = _Batch()

    def _retry_later(self, unhandled: list[Message], failure: TransientError) -> None:
        first: dict[tuple[str, int], int] = {}
        for msg in unhandled:
            topic, partition, offset = _coordinates(msg)
            first[(topic, partition)] = min(first.get((topic, partition), offset), offset)
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("cannot rewind %s[%d] to %d: %s", topic, partition, offset, exc)
        delay = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
        self._failures += 1
        self.metrics.retries.labels(type(failure).__name__).inc()
        log.warning("%s; %d records will be retried in %.1f s", failure, len(unhandled), delay)
        self._stop.wait(delay)

    # Lag ----------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))
        self._lag_due = 0.0

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))
        for p in partitions:
            with contextlib.suppress(KeyError):  # no lag was reported for it yet
                self.metrics.lag.remove(p.topic, str(p.partition))

    def _update_lag(self) -> None:
        """Every few seconds: high watermark minus committed offset, per assigned partition."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_INTERVAL_S
        try:
            assignment = self.consumer.assignment()
            if not assignment:
                return
            for tp in self.consumer.committed(assignment, timeout=2.0):
                low, high = self.consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
                committed = tp.offset if tp.offset >= 0 else low
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - committed))
        except KafkaException as exc:
            log.debug("lag not updated: %s", exc)
