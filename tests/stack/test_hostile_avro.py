"""A writer schema with an array of zero-size items, registered in the real registry, is refused
when a record names it: a forged block count near 2^62 would otherwise keep fastavro's item loop
busy for ever (it never runs out of bytes). The record is dead-lettered as UNKNOWN_SCHEMA_ID."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from fastavro.io.binary_encoder import BinaryEncoder

import schemas
from fraud_core import avro
from fraud_core.exceptions import DecodeError
from fraud_core.registry import RegistryClient, zero_size_array

pytestmark = pytest.mark.integration


def _with_array(items: Any) -> dict[str, Any]:
    schema = schemas.load_json(schemas.TRANSACTION)
    return {
        **schema,
        "fields": [
            *schema["fields"],
            {"name": "pad", "type": {"type": "array", "items": items}, "default": []},
        ],
    }


@pytest.mark.parametrize(
    ("items", "unsafe"),
    [
        ("null", True),
        ({"type": "record", "name": "Empty", "fields": []}, True),
        ({"type": "record", "name": "Nulls", "fields": [{"name": "n", "type": "null"}]}, True),
        ({"type": "fixed", "name": "Zero", "size": 0}, True),
        ("int", False),
        (["null", "int"], False),
        ({"type": "array", "items": "string"}, False),
    ],
)
def test_zero_size_items_are_found(items: Any, unsafe: bool) -> None:
    assert (zero_size_array(fastavro.parse_schema(_with_array(items))) == "pad") is unsafe


def test_our_schemas_have_no_such_array() -> None:
    for name in (schemas.TRANSACTION, schemas.DECISION, schemas.DEAD_LETTER, schemas.LABEL, schemas.ACTION):
        assert zero_size_array(schemas.load(name)) is None


def test_a_record_with_a_huge_block_count_of_null_items_is_dead_lettered(  # type: ignore[no-untyped-def]
    stack, make_topic: Callable[..., str]
) -> None:
    subject = f"{make_topic('hostile', schema=None)}-value"
    client = RegistryClient(stack.registry_url)
    schema_id = client.register(subject, json.dumps(_with_array("null")))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas.load(schemas.TRANSACTION), {
        "event_id": "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60", "user_id": "u", "card_id": "c", "amount_minor": 1,
        "currency": "EUR", "merchant_id": "m", "merchant_category": "5411", "country": "DE",
        "channel": "ECOM", "event_time": 1_767_225_600_000, "device_id": None,
    })  # fmt: skip
    encoder = BinaryEncoder(buf)
    encoder.write_long(2**62)  # the block count of `pad`; no item follows, none is needed
    encoder.flush()
    value = struct.pack(">bI", 0, schema_id) + buf.getvalue()
    with pytest.raises(DecodeError) as info:
        avro.decode(value, client.parsed_schema, schemas.load(schemas.TRANSACTION))
    assert info.value.error_type == "UNKNOWN_SCHEMA_ID" and "no bytes (pad)" in str(info.value)
