"""Producing records with back-pressure and delivery accounting, around a configured ``Producer``.

librdkafka raises ``BufferError`` when its local queue is full; the answer is always the same:
serve delivery callbacks so the queue drains, then try again. Deliveries are counted here, and
failures logged (the first few, then every thousandth), so every producer of the project reports
them alike. The ``Producer`` itself (its librdkafka configuration) comes from the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

_LOGGED_FAILURES = 20  # then only every 1000th; the counts have the total
_KEPT_ERRORS = 100


class Publisher:
    """Sends records through ``producer``, waiting out a full local queue, and counts deliveries.

    Attributes:
        delivered: records the broker acknowledged.
        failed: records the broker refused or that timed out.
        errors: the first failures as text, for error messages (:meth:`take_errors` empties it).

    Args:
        producer: a configured confluent-kafka ``Producer``.
        drain_s: how long each wait for the queue to drain polls when it is full.
    """

    def __init__(self, producer: Producer, *, drain_s: float = 0.05) -> None:
        self.producer = producer
        self.drain_s = drain_s
        self.delivered = 0
        self.failed = 0
        self.errors: list[str] = []

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] = (),
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record; blocks (serving callbacks) while librdkafka's local queue is full.
        ``timestamp_ms`` None (or 0) lets librdkafka stamp the send time.

        Raises:
            KafkaException: the producer refused the record for another reason (fatal error, ...).
        """
        pairs: list[tuple[str, str | bytes | None]] = list(
            headers.items() if isinstance(headers, Mapping) else headers
        )
        while True:
            try:
                self.producer.produce(
                    topic,
                    value,
                    key,
                    headers=pairs,
                    on_delivery=self._on_delivery,
                    timestamp=timestamp_ms or 0,
                )
                break
            except BufferError:
                self.producer.poll(self.drain_s)
        self.producer.poll(0)

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks for up to ``timeout_s``."""
        self.producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for every queued record; returns how many are still undelivered."""
        remaining = int(self.producer.flush(timeout_s))
        if remaining:
            log.error("%d records still undelivered after a %.0f s flush", remaining, timeout_s)
        return remaining

    def take_errors(self) -> list[str]:
        """The delivery failures recorded since the last call, then forgets them."""
        errors, self.errors = self.errors, []
        return errors

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if len(self.errors) < _KEPT_ERRORS:
            self.errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
        if self.failed <= _LOGGED_FAILURES or self.failed % 1000 == 0:
            log.error(
                "delivery failed to %s[%s] key=%s: %s (%d failures so far)",
                msg.topic(),
                msg.partition(),
                (msg.key() or b"").decode(errors="replace"),
                err,
                self.failed,
            )
