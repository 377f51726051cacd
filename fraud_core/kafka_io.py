"""Small Kafka helpers for tools around the pipeline (demo, benchmark, backtest, tests): publish
Avro records with Confluent framing, and read topics back decoded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

import schemas
from fraud_core import avro
from fraud_core.connections import KafkaConnection, as_connection
from fraud_core.exceptions import DecodeError
from fraud_core.registry import RegistryClient


def new_headers(correlation_id: str | None = None) -> list[tuple[str, bytes]]:
    """Fresh ``correlation_id`` and W3C ``traceparent`` headers for a new input event."""
    trace = uuid.uuid4().hex
    span = uuid.uuid4().hex[:16]
    return [
        ("correlation_id", (correlation_id or uuid.uuid4().hex).encode()),
        ("traceparent", f"00-{trace}-{span}-01".encode()),
    ]


class AvroPublisher:
    """Idempotent producer of Confluent-framed Avro values (schema id looked up once per topic)."""

    def __init__(self, bootstrap: str | KafkaConnection, registry_url: str, linger_ms: int = 2) -> None:
        self.registry = RegistryClient(registry_url)
        self.producer = Producer(
            as_connection(bootstrap).librdkafka(
                **{"enable.idempotence": True, "acks": "all", "linger.ms": linger_ms}
            )
        )
        self._ids: dict[str, int] = {}
        self.errors: list[str] = []

    def encode(self, topic: str, schema_name: str, record: dict[str, Any]) -> bytes:
        if topic not in self._ids:
            self._ids[topic] = self.registry.lookup_id(f"{topic}-value", schemas.load_text(schema_name))
        return avro.encode(self._ids[topic], schemas.load(schema_name), record)

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, key=key, value=value, headers=list(headers), on_delivery=self._delivered
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def send(
        self,
        topic: str,
        schema_name: str,
        key: str,
        record: dict[str, Any],
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self.send_raw(topic, key.encode(), self.encode(topic, schema_name, record), headers)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining or self.errors:
            raise RuntimeError(f"{remaining} records undelivered; errors: {self.errors[:3]}")


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes]
    record: dict[str, Any] | None
    raw: bytes | None
    timestamp_ms: int
    received_ms: int


def decoder(registry_url: str) -> Callable[[bytes | None], dict[str, Any] | None]:
    registry = RegistryClient(registry_url)

    def decode(value: bytes | None) -> dict[str, Any] | None:
        try:
            return avro.decode(value, registry.parsed_schema)
        except DecodeError:
            return None

    return decode


def consumer(bootstrap: str | KafkaConnection, group_id: str | None = None, **extra: Any) -> Consumer:
    """A read-committed consumer from the earliest offset (a fresh group unless ``group_id``)."""
    return Consumer(
        as_connection(bootstrap).librdkafka(
            **{
                "group.id": group_id or f"reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                **extra,
            }
        )
    )


def stream(
    bootstrap: str | KafkaConnection,
    registry_url: str,
    topics: Iterable[str],
    stop: Callable[[], bool],
    poll_s: float = 0.2,
) -> Iterator[Received]:
    """Yield decoded records of ``topics`` from the beginning until ``stop()`` is true."""
    decode = decoder(registry_url)
    c = consumer(bootstrap)
    c.subscribe(list(topics))
    try:
        while not stop():
            msg = c.poll(poll_s)
            if msg is None or msg.error():
                continue
            now = time.time_ns() // 1_000_000
            yield Received(
                str(msg.topic()),
                int(msg.partition() or 0),
                int(msg.offset() or 0),
                msg.key(),
                {str(h[0]): h[1] for h in list(msg.headers() or []) if isinstance(h[1], bytes)},
                decode(msg.value()),
                msg.value(),
                msg.timestamp()[1],
                now,
            )
    finally:
        c.close()


def read_until(
    bootstrap: str | KafkaConnection,
    registry_url: str,
    topics: Iterable[str],
    expected: int,
    timeout_s: float,
    idle_s: float = 0.0,
) -> list[Received]:
    """Read ``topics`` from the beginning until ``expected`` records arrived (then ``idle_s`` more
    seconds, to catch extras such as duplicates) or ``timeout_s`` passed."""
    out: list[Received] = []
    deadline = time.monotonic() + timeout_s
    reached: list[float] = []

    def stop() -> bool:
        now = time.monotonic()
        if len(out) >= expected and not reached:
            reached.append(now)
        return now > deadline or bool(reached and now - reached[0] >= idle_s)

    for rec in stream(bootstrap, registry_url, topics, stop):
        out.append(rec)
    return out


def end_offsets(bootstrap: str | KafkaConnection, topic: str) -> dict[int, int]:
    """High watermark per partition of ``topic``."""
    c = consumer(bootstrap)
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    finally:
        c.close()
