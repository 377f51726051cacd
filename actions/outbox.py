"""Notifications, decoupled from the effects: a Redis outbox and the thread that empties it.

A flagged decision's notification used to be sent inline, and a webhook that failed (a 5xx, a
timeout, a header the HTTP client refused) rewound the batch: no later decision on that partition
blocked a card, held one, updated a profile or opened a case until the webhook came back. Now the
consumer only *enqueues* the notification (:meth:`NotificationOutbox.enqueue`, one Redis round trip)
once the effects are applied, and a :class:`NotificationDispatcher` thread delivers it: a failure is
retried with exponential back-off, and after ``max_attempts`` the notification becomes a dead letter
(``error_type`` ``NOTIFY_FAILED``, stage ``action-notifier``, the decision's original bytes) on the
dead-letter topic. The effects never wait for the webhook.

Keys: ``actions:notify:due`` (sorted set: event id -> when to try next, epoch ms) and
``actions:notify:item:<event_id>`` (JSON: payload, headers, attempts, where the decision came from).

Delivery is at least once, as before: a dispatcher pushes an item's due time one lease ahead before
sending, so a dispatcher that dies mid-delivery leaves it to be retried after the lease; two
dispatchers (two consumer processes) that read the same due item in the same instant may both send it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis
from confluent_kafka import KafkaError, Message, Producer
from redis.exceptions import RedisError

from actions.exceptions import NotifyError
from actions.metrics import Metrics
from actions.notify import Notifier
from fraud_core.exceptions import TransientError
from fraud_core.kafka.dead_letter import dead_letter_record
from fraud_core.kafka.headers import http_headers
from fraud_core.kafka.serde import AvroSerializer

log = logging.getLogger(__name__)

DUE_KEY = "actions:notify:due"
ITEM_PREFIX = "actions:notify:item:"
STAGE = "action-notifier"
ERROR_TYPE = "NOTIFY_FAILED"


def item_key(event_id: str) -> str:
    return f"{ITEM_PREFIX}{event_id}"


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


class NotificationOutbox:
    """Where the consumer leaves notifications for the dispatcher (Redis, shared by the group)."""

    def __init__(self, client: redis.Redis, item_ttl_s: int, clock_ms: Callable[[], int]) -> None:
        self._redis = client
        self.item_ttl_s = item_ttl_s
        self._clock_ms = clock_ms

    def enqueue(
        self,
        event_id: str,
        payload: Mapping[str, Any],
        headers: Mapping[str, bytes],
        source: tuple[str, int, int],
        key: bytes | None,
        value: bytes | None,
    ) -> None:
        """Leave one notification, due now. A second enqueue of the same event (a redelivery)
        keeps the first one's attempts. Raises TransientError when Redis fails."""
        item = {
            "payload": dict(payload),
            "headers": {name: raw.decode() for name, raw in headers.items()},
            "attempts": 0,
            "source": list(source),
            "key": _b64(key),
            "value": _b64(value),
        }
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(
                    item_key(event_id), json.dumps(item, separators=(",", ":")), ex=self.item_ttl_s, nx=True
                )
                pipe.zadd(DUE_KEY, {event_id: self._clock_ms()}, nx=True)
                pipe.execute()
        except RedisError as exc:
            raise TransientError(f"Redis failed queueing the notification of {event_id}: {exc}") from exc


class NotificationDispatcher:
    """Delivers due notifications in a thread of its own; never stops on an error (logged, counted).

    Args:
        notifier: how a notification is delivered; any exception it raises is a failed attempt.
        dead_letters: encodes the dead-letter record; ``dlq_topic`` is where it goes, through
            ``producer``.
        max_attempts: attempts before the notification becomes a dead letter.
        base_delay_s, max_delay_s: the back-off after attempt n is ``min(max, base * 2**(n-1))``.
        lease_s: how long a delivery in progress keeps others off the item.
    """

    def __init__(
        self,
        client: redis.Redis,
        notifier: Notifier,
        producer: Producer,
        dead_letters: AvroSerializer,
        dlq_topic: str,
        metrics: Metrics,
        *,
        max_attempts: int,
        base_delay_s: float,
        max_delay_s: float,
        lease_s: float,
        clock_ms: Callable[[], int],
        idle_s: float = 0.2,
        batch: int = 50,
    ) -> None:
        self._redis = client
        self.notifier = notifier
        self._producer = producer
        self._dead_letters = dead_letters
        self.dlq_topic = dlq_topic
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.lease_s = lease_s
        self._clock_ms = clock_ms
        self.idle_s = idle_s
        self.batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notification-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the delivery in progress (waits at most ``timeout_s``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.dispatch_due()
            except Exception as exc:  # a dispatcher that dies silently loses every notification
                self.metrics.notify_errors.labels(type(exc).__name__).inc()
                log.exception("notification dispatcher: %s; going on", exc)
                sent = 0
            if not sent:
                self._stop.wait(self.idle_s)

    def dispatch_due(self) -> int:
        """Try every notification due now (at most ``batch``); returns how many were tried."""
        now = self._clock_ms()
        due = cast("list[bytes]", self._redis.zrangebyscore(DUE_KEY, "-inf", now, start=0, num=self.batch))
        for raw_id in due:
            if self._stop.is_set():
                break
            self._attempt(raw_id.decode())
        return len(due)

    def _attempt(self, event_id: str) -> None:
        now = self._clock_ms()
        self._redis.zadd(DUE_KEY, {event_id: now + int(self.lease_s * 1000)}, xx=True)
        raw = cast("bytes | None", self._redis.get(item_key(event_id)))
        if raw is None:  # expired, or delivered by another dispatcher meanwhile
            self._redis.zrem(DUE_KEY, event_id)
            return
        try:
            item = json.loads(raw)
            payload, headers = (
                item["payload"],
                http_headers({name: value.encode() for name, value in item["headers"].items()}),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("notification of %s unreadable (%s): dropped from the outbox", event_id, exc)
            self.metrics.notify_errors.labels(type(exc).__name__).inc()
            self._forget(event_id)
            return
        try:
            self.notifier.notify(payload, headers)
        except Exception as exc:  # any failure of any notifier is a failed attempt
            self._failed(event_id, item, exc)
            return
        self._forget(event_id)
        self.metrics.notifications.labels("delivered").inc()

    def _failed(self, event_id: str, item: dict[str, Any], exc: Exception) -> None:
        attempts = int(item.get("attempts", 0)) + 1
        self.metrics.notify_errors.labels(type(exc).__name__).inc()
        if attempts >= self.max_attempts:
            self._dead_letter(event_id, item, exc, attempts)
            return
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempts - 1))
        item["attempts"] = attempts
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(item_key(event_id), json.dumps(item, separators=(",", ":")), xx=True, keepttl=True)
            pipe.zadd(DUE_KEY, {event_id: self._clock_ms() + int(delay * 1000)}, xx=True)
            pipe.execute()
        self.metrics.notifications.labels("retried").inc()
        log.warning(
            "notification of event %s failed (attempt %d of %d): %s; retrying in %.1f s",
            event_id,
            attempts,
            self.max_attempts,
            str(exc)[:300],
            delay,
        )

    def _dead_letter(self, event_id: str, item: dict[str, Any], exc: Exception, attempts: int) -> None:
        topic, partition, offset = item["source"]
        headers = {name: value.encode() for name, value in item["headers"].items()}
        error = NotifyError(
            f"notification of event {event_id} failed {attempts} times; last: {str(exc)[:300]}"
        )
        envelope = dead_letter_record(
            (topic, partition, offset),
            _unb64(item.get("key")),
            _unb64(item.get("value")),
            error,
            STAGE,
            headers,
            error_type=ERROR_TYPE,
        )
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        value = self._dead_letters.encode(self.dlq_topic, envelope)
        key = _unb64(item.get("key"))
        self._producer.produce(self.dlq_topic, value, key, headers=headers, on_delivery=delivered)
        if self._producer.flush(30) or failures:
            # Not dead-lettered: it stays in the outbox, tried again after the longest back-off.
            self._redis.zadd(DUE_KEY, {event_id: self._clock_ms() + int(self.max_delay_s * 1000)}, xx=True)
            raise TransientError(f"notification dead letter of {event_id} not delivered: {failures[:1]}")
        self._forget(event_id)
        self.metrics.notifications.labels("dead_lettered").inc()
        self.metrics.dead_letters.labels(ERROR_TYPE).inc()
        log.error(
            "notification of event %s dead-lettered to %s after %d attempts",
            event_id,
            self.dlq_topic,
            attempts,
        )

    def _forget(self, event_id: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(DUE_KEY, event_id)
            pipe.delete(item_key(event_id))
            pipe.execute()


def wall_clock_ms() -> int:
    """Retry times are wall-clock (shared by every consumer process through Redis)."""
    return time.time_ns() // 1_000_000
