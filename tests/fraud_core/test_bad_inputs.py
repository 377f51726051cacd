"""Bad input at every consumed edge, table-driven (issue 16). Unit tier: the decode/validate
functions each consumer runs on a raw value, with an in-memory writer-schema lookup in place of the
registry (the registry's own refusals are tested against the real one in tests/stack).

Edges: ``payments.initiated`` (the job's :class:`Intake`), the decision topics (the action
consumers' ``avro.decode`` + ``parse_decision``), ``payments.labels`` (the backtest's
``decode_label``) and the Redis profile both the job and the consumers read (``read_profile``).
The HTTP API's table is tests/inference_service/test_hostile_payloads.py. Each row expects the
dead-letter ``error_type`` and the words its message must contain (the field, and the value when it
is safe to show). The table in tests/README.md lists the rows and outcomes.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Callable
from typing import Any

import fastavro
import pytest

import schemas
from fraud_core import avro
from fraud_core.action_logic import parse_decision
from fraud_core.enrichment import read_profile
from fraud_core.exceptions import DecodeError, InvalidProfile, SchemaNotFound
from fraud_core.labels import decode_label
from fraud_core.scoring_step import Intake
from fraud_core.transaction import DAY_MS, EventTimeBounds
from tests.records import NOW, payment

HUGE = 2**62
TXN_ID, DECISION_ID, LABEL_ID, TXN_DOUBLE_AMOUNT_ID, JSON_SCHEMA_ID = 1, 2, 3, 4, 5


def _with_double_amount() -> Any:
    schema = schemas.load_json(schemas.TRANSACTION)
    fields = [{**f, "type": "double"} if f["name"] == "amount_minor" else f for f in schema["fields"]]
    return fastavro.parse_schema({**schema, "fields": fields})


WRITERS = {
    TXN_ID: schemas.load(schemas.TRANSACTION),
    DECISION_ID: schemas.load(schemas.DECISION),
    LABEL_ID: schemas.load(schemas.LABEL),
    TXN_DOUBLE_AMOUNT_ID: _with_double_amount(),
}


def writer_schema(schema_id: int) -> Any:
    """The registry's answer for an id (in memory): what RegistryClient.parsed_schema returns."""
    if schema_id == JSON_SCHEMA_ID:
        raise SchemaNotFound(f"schema id {schema_id} is a JSON schema, not Avro")
    if schema_id not in WRITERS:
        raise SchemaNotFound(f"no schema with id {schema_id}")
    return WRITERS[schema_id]


class fake_registry:  # named like the fakes of tests/README.md
    def parsed_schema(self, schema_id: int) -> Any:
        return writer_schema(schema_id)


def framed(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def encoded(schema_id: int, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, WRITERS[schema_id], record)
    return framed(schema_id, buf.getvalue())


def varint(n: int) -> bytes:
    """An Avro long (zig-zag varint)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return bytes([*out, low])
        out.append(low | 0x80)


def decision(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": "u-1",
        "decision": "FLAGGED",
        "score": 0.97,
        "threshold": 0.5,
        "model_version": "m1",
        "reasons": ["unusually large amount"],
        "degraded": False,
        "features": {"amount_eur": 20.0},
        "event_time": NOW,
        "decided_at": NOW + 3,
        "card_id": "card_1",
        "amount_minor": 2000,
        "currency": "EUR",
        "country": "DE",
        "action": "BLOCK",
    } | overrides


def label(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "is_fraud": True,
        "fraud_type": "card_testing",
        "labelled_at": NOW,
    } | overrides


def txn_with_huge_string_length() -> bytes:
    # The first field (event_id, a string) claims 2^62 bytes: fastavro must fail, not allocate.
    return framed(TXN_ID, varint(HUGE) + b"abc")


def decision_with_huge_block_count() -> bytes:
    """A decision whose ``reasons`` array announces 2^62 items, then holds one: an Avro record is its
    fields one after the other, so the fields before ``reasons`` are encoded with a schema of them."""
    schema = schemas.load_json(schemas.DECISION)
    names = [f["name"] for f in schema["fields"]]
    before = {**schema, "fields": schema["fields"][: names.index("reasons")]}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(before), decision())
    return framed(DECISION_ID, buf.getvalue() + varint(HUGE) + b"\x02a")


PAN = "4111 1111 1111 1111"
Row = tuple[str, bytes, str, tuple[str, ...]]

INITIATED: list[Row] = [
    (
        "unicode user_id",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), user_id="usér-1")),
        "VALIDATION",
        ("'user_id'", "usér-1"),
    ),
    (
        "zero-width merchant_id",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), merchant_id="m\u200b1")),
        "VALIDATION",
        ("'merchant_id'",),
    ),
    (
        "100 000-character user_id",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), user_id="u" * 100_000)),
        "VALIDATION",
        ("'user_id'", "100002 characters"),
    ),
    (
        "card_id a PAN with spaces",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), card_id=PAN)),
        "VALIDATION",
        ("'card_id'", "1111", "card number"),
    ),
    (
        "event_time 2^62",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), event_time=HUGE)),
        "VALIDATION",
        ("'event_time'", str(HUGE)),
    ),
    (
        "event_time 2^63-1",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), event_time=2**63 - 1)),
        "VALIDATION",
        ("'event_time'", str(2**63 - 1)),
    ),
    (
        "event_time -2^62",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), event_time=-HUGE)),
        "VALIDATION",
        ("'event_time'", str(-HUGE)),
    ),
    (
        "event_time 2 days ahead",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()), event_time=NOW + 2 * DAY_MS)),
        "VALIDATION",
        ("'event_time'", "EVENT_TIME_MAX_AHEAD_MS"),
    ),
    (
        "amount NaN (writer schema with a double)",
        encoded(TXN_DOUBLE_AMOUNT_ID, payment(event_id=str(uuid.uuid4()), amount_minor=float("nan"))),
        "AVRO_DECODE",
        ("schema id 4",),
    ),
    (
        "amount infinity (same)",
        encoded(TXN_DOUBLE_AMOUNT_ID, payment(event_id=str(uuid.uuid4()), amount_minor=float("inf"))),
        "AVRO_DECODE",
        ("schema id 4",),
    ),
    ("JSON text, not Avro", b'{"event_id": "x"}', "BAD_MAGIC_BYTE", ("magic byte is 123",)),
    ("empty value", b"", "EMPTY_VALUE", ("no value",)),
    ("3-byte value", b"\x00\x00\x01", "TRUNCATED", ("5-byte",)),
    ("unknown schema id", framed(999, b"\x00"), "UNKNOWN_SCHEMA_ID", ("999",)),
    ("schema id of a JSON schema", framed(JSON_SCHEMA_ID, b"{}"), "UNKNOWN_SCHEMA_ID", ("not Avro",)),
    ("string length 2^62", txn_with_huge_string_length(), "AVRO_DECODE", ("schema id 1",)),
    (
        "trailing bytes",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()))) + b"\x00",
        "AVRO_DECODE",
        ("trailing",),
    ),
]

DECISIONS: list[Row] = [
    ("unicode user_id", encoded(DECISION_ID, decision(user_id="usér")), "VALIDATION", ("'user_id'", "usér")),
    (
        "100 000-character user_id",
        encoded(DECISION_ID, decision(user_id="u" * 100_000)),
        "VALIDATION",
        ("'user_id'", "characters"),
    ),
    ("score NaN", encoded(DECISION_ID, decision(score=float("nan"))), "VALIDATION", ("'score'", "nan")),
    ("score infinity", encoded(DECISION_ID, decision(score=float("inf"))), "VALIDATION", ("'score'", "inf")),
    (
        "threshold -infinity",
        encoded(DECISION_ID, decision(threshold=float("-inf"))),
        "VALIDATION",
        ("'threshold'", "-inf"),
    ),
    (
        "card_id a PAN",
        encoded(DECISION_ID, decision(card_id=PAN.replace(" ", "-"))),
        "VALIDATION",
        ("'card_id'", "1111"),
    ),
    (
        "event_time 2^62",
        encoded(DECISION_ID, decision(event_time=HUGE)),
        "VALIDATION",
        ("'event_time'", str(HUGE)),
    ),
    (
        "decided_at 2^62",
        encoded(DECISION_ID, decision(decided_at=HUGE)),
        "VALIDATION",
        ("'decided_at'", str(HUGE)),
    ),
    ("reasons block count 2^62", decision_with_huge_block_count(), "AVRO_DECODE", ("schema id 2",)),
    ("JSON text, not Avro", b'{"decision": "FLAGGED"}', "BAD_MAGIC_BYTE", ("magic byte",)),
    ("unknown schema id", framed(999, b"\x00"), "UNKNOWN_SCHEMA_ID", ("999",)),
    ("schema id of a JSON schema", framed(JSON_SCHEMA_ID, b"{}"), "UNKNOWN_SCHEMA_ID", ("not Avro",)),
]

LABELS: list[Row] = [
    ("unicode event_id", encoded(LABEL_ID, label(event_id="é" * 36)), "VALIDATION", ("'event_id'",)),
    (
        "100 000-character event_id",
        encoded(LABEL_ID, label(event_id="e" * 100_000)),
        "VALIDATION",
        ("'event_id'", "characters"),
    ),
    (
        "fraud_type with a newline",
        encoded(LABEL_ID, label(fraud_type="card\ntesting")),
        "VALIDATION",
        ("'fraud_type'",),
    ),
    (
        "labelled_at 2^62",
        encoded(LABEL_ID, label(labelled_at=HUGE)),
        "VALIDATION",
        ("'labelled_at'", str(HUGE)),
    ),
    ("JSON text, not Avro", b'{"is_fraud": true}', "BAD_MAGIC_BYTE", ("magic byte",)),
    ("unknown schema id", framed(999, b"\x00"), "UNKNOWN_SCHEMA_ID", ("999",)),
    (
        "a transaction on the labels topic",
        encoded(TXN_ID, payment(event_id=str(uuid.uuid4()))),
        "AVRO_DECODE",
        ("schema id 1",),
    ),
]

PROFILES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("a JSON list", b"[]", ("object",)),
    ("JSON null", b"null", ("object",)),
    ("txn_count 1e999", b'{"txn_count": 1e999}', ("txn_count",)),
    ("avg_amount NaN", b'{"avg_amount": NaN}', ("avg_amount",)),
    ("avg_amount -Infinity", b'{"avg_amount": -Infinity}', ("avg_amount",)),
    ("truncated JSON", b'{"avg_amount": ', ("JSON",)),
    ("not UTF-8", b"\xff\xfe{}", ("not JSON",)),
    ("devices a string", b'{"devices": "d"}', ("devices",)),
    (
        "a 100 000-character home_country",
        json.dumps({"home_country": "D" * 100_000}).encode(),
        ("larger than 65536 bytes",),
    ),
]


def _decode_initiated(value: bytes) -> Any:
    return Intake(fake_registry(), None, "dlq", "test", EventTimeBounds()).decode(value, NOW)  # type: ignore[arg-type]


def _decode_decision(value: bytes) -> Any:
    # What ActionConsumer._handle does with a value (its registry lookup in memory here).
    return parse_decision(avro.decode(value, writer_schema, schemas.load(schemas.DECISION)))


def _decode_label(value: bytes) -> Any:
    return decode_label(value, writer_schema)


EDGES: dict[str, tuple[Callable[[bytes], Any], list[Row]]] = {
    "payments.initiated": (_decode_initiated, INITIATED),
    "decision topics": (_decode_decision, DECISIONS),
    "payments.labels": (_decode_label, LABELS),
}


def test_the_valid_records_of_each_edge_decode() -> None:
    """The rows differ from these by one value: what is refused is that value."""
    assert _decode_initiated(encoded(TXN_ID, payment(event_id=str(uuid.uuid4())))).user_id == "u-1"
    assert _decode_decision(encoded(DECISION_ID, decision())).user_id == "u-1"
    assert _decode_label(encoded(LABEL_ID, label()))["is_fraud"] is True


@pytest.mark.parametrize(
    ("edge", "case", "value", "error_type", "words"),
    [(edge, *row) for edge, (_decode, rows) in EDGES.items() for row in rows],
    ids=lambda v: v if isinstance(v, str) and len(v) < 60 else "",
)
def test_each_bad_value_gets_a_clear_dead_letter_error(
    edge: str, case: str, value: bytes, error_type: str, words: tuple[str, ...]
) -> None:
    decode, _rows = EDGES[edge]
    with pytest.raises(DecodeError) as caught:
        decode(value)
    assert caught.value.error_type == error_type, str(caught.value)
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert len(message) < 400, "the message must not echo a whole hostile value"
    assert PAN.replace(" ", "") not in message.replace(" ", "").replace("-", "")


@pytest.mark.parametrize(("case", "raw", "words"), PROFILES, ids=[p[0] for p in PROFILES])
def test_each_bad_profile_is_refused_naming_what_is_wrong(
    case: str, raw: bytes, words: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidProfile) as caught:
        read_profile(raw)
    for word in words:
        assert word in str(caught.value), f"{word!r} not in {caught.value}"
