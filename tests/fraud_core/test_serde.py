"""Confluent-framed Avro in and out, and how each way a value can be bad is classified for the DLQ.

The writer schema comes from ``fake_schemas`` (a dict lookup) instead of the registry; the real
registry is exercised in tests/stack/test_registry_errors.py and test_hostile_avro.py.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest

import schemas
from fraud_core.avro import decode, encode
from fraud_core.exceptions import DecodeError, RegistryUnavailable, SchemaNotFound, SerializationError

TXN_ID = 7
TXN = {
    "event_id": "0b7c6a52-3f40-4d8e-9a53-6d1f2f1f8f11",
    "user_id": "u-1",
    "card_id": "c-1",
    "amount_minor": 1250,
    "currency": "EUR",
    "merchant_id": "m-1",
    "merchant_category": "5411",
    "country": "DE",
    "channel": "ECOM",
    "event_time": 1_700_000_000_000,
}


class fake_schemas:  # named like the fakes of tests/README.md
    def __init__(self, known: dict[int, Any], down: bool = False) -> None:
        self.known = known
        self.down = down

    def __call__(self, schema_id: int) -> Any:
        if self.down:
            raise RegistryUnavailable(f"registry unreachable while resolving id {schema_id}")
        if schema_id not in self.known:
            raise SchemaNotFound(f"schema id {schema_id} not found")
        return self.known[schema_id]


def _txn_schema() -> Any:
    return schemas.load(schemas.TRANSACTION)


def _record(**changes: Any) -> dict[str, Any]:
    record = {
        field["name"]: TXN.get(field["name"], field.get("default"))
        for field in schemas.load_json(schemas.TRANSACTION)["fields"]
    }
    record.update(changes)
    return record


def test_a_record_round_trips_through_the_confluent_frame() -> None:
    schema = _txn_schema()
    value = encode(TXN_ID, schema, _record())
    assert value[0] == 0 and struct.unpack(">I", value[1:5])[0] == TXN_ID
    decoded = decode(value, fake_schemas({TXN_ID: schema}), schema)
    # timestamp-millis comes back as an aware UTC datetime, the rest as written
    assert decoded.pop("event_time") == datetime.fromtimestamp(TXN["event_time"] / 1000, UTC)
    expected = _record()
    del expected["event_time"]
    assert decoded == expected


def test_a_value_that_does_not_fit_the_schema_is_refused_naming_the_field() -> None:
    with pytest.raises(SerializationError, match="amount_minor"):
        encode(TXN_ID, _txn_schema(), _record(amount_minor="12.50"))


def _framed(schema_id: int, body: bytes = b"", magic: int = 0) -> bytes:
    return struct.pack(">bI", magic, schema_id) + body


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        (None, "EMPTY_VALUE"),
        (b"", "EMPTY_VALUE"),
        (b"\x00\x00\x00", "TRUNCATED"),
        (_framed(TXN_ID, magic=1), "BAD_MAGIC_BYTE"),
        (_framed(999), "UNKNOWN_SCHEMA_ID"),
        (_framed(TXN_ID, b"\x02"), "AVRO_DECODE"),
    ],
    ids=["none", "empty", "truncated", "bad-magic", "unknown-id", "short-body"],
)
def test_each_bad_value_gets_its_dead_letter_reason(value: bytes | None, error_type: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(value, fake_schemas({TXN_ID: _txn_schema()}))
    assert caught.value.error_type == error_type


def test_trailing_bytes_after_the_body_are_a_bad_record() -> None:
    schema = _txn_schema()
    value = encode(TXN_ID, schema, _record()) + b"\x00"
    with pytest.raises(DecodeError, match="1 trailing bytes") as caught:
        decode(value, fake_schemas({TXN_ID: schema}), schema)
    assert caught.value.error_type == "AVRO_DECODE"


def test_an_unreachable_registry_is_never_a_bad_record() -> None:
    value = encode(TXN_ID, _txn_schema(), _record())
    with pytest.raises(RegistryUnavailable):
        decode(value, fake_schemas({}, down=True))
