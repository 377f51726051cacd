"""Helpers of the action consumer tests: decision records, raw producing, reading through the
real registry, polling the consumer until an expected state.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

import schemas
from actions.consumer import ActionConsumer
from actions.exceptions import NotifyError
from actions.settings import ConsumerSettings
from fraud_core import avro
from fraud_core.registry import RegistryClient

T0 = 1_700_000_000_000


@dataclass(frozen=True)
class Topics:
    flagged: str
    approved: str
    actions: str
    dlq: str


class RecordingNotifier:
    """A notifier that keeps what it was asked to deliver; ``fail_first`` deliveries fail."""

    channel = "test"

    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.fail_first = fail_first

    def notify(self, payload: dict[str, Any], headers: dict[str, str]) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise NotifyError("receiver down (test)")
        self.sent.append((payload, headers))


def consumer_settings(
    stack: Any, *, flagged: str, approved: str, actions: str, dlq: str, **extra: Any
) -> ConsumerSettings:
    """Settings of an action consumer on the test stack, with a group of its own."""
    return ConsumerSettings(
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        SCHEMA_REGISTRY_URL=stack.registry_url,
        REDIS_URL=stack.redis_url,
        FLAGGED_TOPIC=flagged,
        APPROVED_TOPIC=approved,
        ACTIONS_TOPIC=actions,
        DLQ_TOPIC=dlq,
        GROUP_ID=f"actions-test-{uuid.uuid4().hex[:10]}",
        **{"ACTIONS_METRICS_PORT": 0} | extra,
    )


def decision(decision: str = "APPROVED", **overrides: Any) -> dict[str, Any]:
    """A valid decision record with unique event, user and card ids (FLAGGED ones are BLOCK
    unless ``action`` says otherwise)."""
    suffix = uuid.uuid4().hex[:12]
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "user_id": f"user_{suffix}",
        "decision": decision,
        "score": 0.97 if decision == "FLAGGED" else 0.02,
        "threshold": 0.5,
        "model_version": "test-model",
        "reasons": ["unusually large amount"] if decision == "FLAGGED" else [],
        "degraded": False,
        "features": {"amount_eur": 20.0},
        "event_time": T0,
        "decided_at": T0 + 3,
        "card_id": f"card_{suffix}",
        "amount_minor": 2000,
        "currency": "EUR",
        "merchant_id": "merchant_1",
        "country": "DE",
        "device_id": f"dev_{suffix}",
        "shadow_score": None,
        "shadow_model_version": None,
        "action": "BLOCK" if decision == "FLAGGED" else "APPROVE",
        "rules_fired": [],
        "rules_version": "test-rules",
        "block_threshold": 0.9,
    }
    return base | overrides


def encode_decision(stack: Any, topic: str, record: dict[str, Any]) -> bytes:
    schema_id = RegistryClient(stack.registry_url).lookup_id(
        f"{topic}-value", schemas.load_text(schemas.DECISION)
    )
    return avro.encode(schema_id, schemas.load(schemas.DECISION), record)


def headers_for(correlation_id: str) -> list[tuple[str, bytes]]:
    trace = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    return [("correlation_id", correlation_id.encode()), ("traceparent", trace.encode())]


def produce_raw(
    stack: Any, topic: str, items: Iterable[tuple[bytes | None, bytes | None, list[Any]]]
) -> None:
    """Produce (key, value, headers) triples and wait until every one is acknowledged."""
    producer = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    for key, value, headers in items:
        producer.produce(topic, value, key, headers=headers)
    assert producer.flush(30) == 0


def produce_decisions(stack: Any, topic: str, records: Iterable[dict[str, Any]], copies: int = 1) -> None:
    items = []
    for record in records:
        value = encode_decision(stack, topic, record)
        headers = headers_for(f"cid-{record['event_id']}")
        items += [(record["user_id"].encode(), value, headers)] * copies
    produce_raw(stack, topic, items)


def drain(consumer: ActionConsumer, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll until ``done()`` holds; fails (not a timing assertion: a liveness deadline) otherwise."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "consumer did not reach the expected state"
        consumer.poll_once(0.5)


def consumed(consumer: ActionConsumer) -> float:
    """Records handled so far, over all topics."""
    return sum(
        s.value
        for metric in consumer.metrics.consumed.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    )


def sample(consumer: ActionConsumer, name: str, **labels: str) -> float:
    return consumer.metrics.registry.get_sample_value(name, labels) or 0.0


def record_count(stack: Any, topic: str) -> int:
    """Records in ``topic``: the sum of its high watermarks (exact once producers have flushed)."""
    probe = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        meta = probe.list_topics(topic, timeout=10)
        return sum(
            probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.topics[topic].partitions
        )
    finally:
        probe.close()


def read_all(stack: Any, topic: str, schema: str) -> list[tuple[Message, dict[str, Any]]]:
    """Every record of ``topic`` (count known from the watermarks), decoded through the registry."""
    expected = record_count(stack, topic)
    registry = RegistryClient(stack.registry_url)
    reader = Consumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    reader.subscribe([topic])
    out: list[tuple[Message, dict[str, Any]]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < expected:
            assert time.monotonic() < deadline, f"read {len(out)} of {expected} records of {topic}"
            msg = reader.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg, avro.decode(msg.value(), registry.parsed_schema, schemas.load(schema))))
    finally:
        reader.close()
    return out
