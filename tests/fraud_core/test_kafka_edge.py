"""The Kafka edge pieces in-process: headers, the dead-letter record, the serializer callables and
the publisher's back-pressure and delivery accounting, against fakes of the registry and producer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from confluent_kafka import KafkaError

import schemas
from fraud_core.exceptions import CardNumberRefused, DecodeError, SerializationError
from fraud_core.kafka.dead_letter import dead_letter_record
from fraud_core.kafka.headers import correlation_id, new_headers, propagated
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroDeserializer, AvroSerializer, value_context


def test_new_headers_are_a_correlation_id_and_a_w3c_traceparent() -> None:
    headers = dict(new_headers())
    assert re.fullmatch(rb"[0-9a-f]{32}", headers["correlation_id"])
    assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])
    assert dict(new_headers("c-1"))["correlation_id"] == b"c-1"
    assert new_headers() != new_headers()


def test_only_the_contract_headers_travel_whatever_their_shape() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    raw = [("correlation_id", b"c-1"), ("traceparent", trace), ("other", b"x"), ("correlation_id", None)]
    assert propagated(raw[:3]) == {"correlation_id": b"c-1", "traceparent": trace.encode()}
    assert propagated({"other": b"x", "traceparent": None}) == {}
    assert propagated(None) == {}
    assert correlation_id({"correlation_id": b"c-1"}) == "c-1" and correlation_id({}) == ""


def test_the_dead_letter_record_keeps_bytes_origin_reason_and_correlation() -> None:
    error = DecodeError("BAD_MAGIC_BYTE", "magic byte is 7")
    record = dead_letter_record(
        ("in", 2, 41), b"u-1", b"\x07x", error, "test", {"correlation_id": b"c-9"}, failed_at=5
    )
    assert record == {
        "source_topic": "in", "source_partition": 2, "source_offset": 41, "key": b"u-1",
        "value": b"\x07x", "error_type": "BAD_MAGIC_BYTE", "error_message": "magic byte is 7",
        "failed_at": 5, "stage": "test", "correlation_id": "c-9",
    }  # fmt: skip
    other = dead_letter_record(("in", 0, 0), None, None, SerializationError("x"), "s", {}, error_type="AUDIT")
    assert other["error_type"] == "AUDIT" and other["correlation_id"] is None and other["failed_at"] > 0


def test_the_dead_letter_record_masks_a_refused_card_number_in_place() -> None:
    pan = "4111111111111111"
    value = b"\x00head" + pan.encode() + b"tail"
    record = dead_letter_record(("in", 0, 1), None, value, CardNumberRefused("card_id", pan), "s", {})
    assert pan.encode() not in record["value"] and len(record["value"]) == len(value)
    assert record["value"].endswith(b"1111tail")


class fake_registry:  # named like the fakes of tests/README.md
    def __init__(self) -> None:
        self.lookups: list[str] = []

    def lookup_id(self, subject: str, schema_text: str) -> int:
        self.lookups.append(subject)
        return 3

    def parsed_schema(self, schema_id: int) -> Any:
        assert schema_id == 3
        return schemas.load(schemas.LABEL)


LABEL = {"event_id": "e-1", "is_fraud": True, "fraud_type": "card_testing", "labelled_at": 1_700_000_000_000}


def test_serializer_and_deserializer_round_trip_in_the_confluent_contract() -> None:
    registry = fake_registry()
    serialize = AvroSerializer(registry, schemas.LABEL)  # type: ignore[arg-type]
    value = serialize(LABEL, value_context("labels"))
    assert value is not None and value[:5] == b"\x00\x00\x00\x00\x03"
    assert serialize.encode("labels", LABEL) == value
    assert registry.lookups == ["labels-value"]  # the id is looked up once per topic
    decoded = AvroDeserializer(registry.parsed_schema, schemas.LABEL)(value, value_context("labels"))
    assert decoded["event_id"] == "e-1" and decoded["is_fraud"] is True
    assert serialize(None, value_context("labels")) is None


def test_the_serializer_refuses_a_misfit_naming_field_and_value_and_needs_a_topic() -> None:
    serialize = AvroSerializer(fake_registry(), schemas.LABEL)  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match=r"'is_fraud'='yes'"):
        serialize({**LABEL, "is_fraud": "yes"}, value_context("labels"))
    with pytest.raises(SerializationError, match="topic"):
        serialize(LABEL)


class fake_producer:
    """Refuses the first ``full`` produce calls as librdkafka does when its queue is full."""

    def __init__(self, full: int, fail: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.full = full
        self.fail = fail
        self.polls: list[float] = []
        self.pending: list[tuple[Any, int]] = []
        self.sent = 0

    def produce(
        self, topic: str, value: Any, key: Any, headers: Any, on_delivery: Any, timestamp: int
    ) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.pending.append((on_delivery, self.sent))
        self.sent += 1

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        for callback, n in self.pending:
            msg = fake_message()
            callback(KafkaError(KafkaError._MSG_TIMED_OUT) if n in self.fail else None, msg)
        self.pending.clear()
        return 0

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


class fake_message:
    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def key(self) -> bytes:
        return b"k"


def test_the_publisher_waits_out_a_full_queue_and_counts_deliveries() -> None:
    producer = fake_producer(full=3, fail={1})
    publisher = Publisher(producer, drain_s=0.01)  # type: ignore[arg-type]
    for i in range(3):
        publisher.produce("t", b"k", b"v", {"correlation_id": b"c"} if i else [])
    assert publisher.flush(1) == 0
    assert producer.polls[:3] == [0.01, 0.01, 0.01]  # three drains, then the record went
    assert (publisher.delivered, publisher.failed) == (2, 1)
    assert len(publisher.take_errors()) == 1 and publisher.take_errors() == []
