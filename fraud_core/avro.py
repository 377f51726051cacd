"""Confluent wire framing: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Decoding raises :class:`DecodeError` for a bad record (its ``error_type`` becomes the DLQ reason) and
:class:`RegistryUnavailable` when the writer schema cannot be fetched right now: that is an outage
to wait out, never the record's fault.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import fastavro

from fraud_core.cards import mask_card
from fraud_core.exceptions import DecodeError, FraudPipelineError, RegistryUnavailable, SerializationError

MAGIC = 0
_HEADER = struct.Struct(">bI")


def decode(
    value: bytes | None, writer_schema: Callable[[int], Any], reader_schema: Any | None = None
) -> dict[str, Any]:
    """Decode a Confluent-framed Avro value.

    Args:
        value: the raw Kafka value.
        writer_schema: returns the parsed writer schema for an id (usually ``RegistryClient.parsed_schema``).
        reader_schema: the schema to resolve into (our ``.avsc``), so newer writers with extra fields decode.
    Raises:
        DecodeError: with error_type EMPTY_VALUE, TRUNCATED, BAD_MAGIC_BYTE, UNKNOWN_SCHEMA_ID or AVRO_DECODE.
        RegistryUnavailable: the registry cannot be reached to resolve the schema id.
    """
    if not value:
        raise DecodeError("EMPTY_VALUE", "record has no value")
    if len(value) < _HEADER.size:
        raise DecodeError(
            "TRUNCATED", f"value of {len(value)} bytes is shorter than the 5-byte Confluent header"
        )
    magic, schema_id = _HEADER.unpack_from(value)
    if magic != MAGIC:
        raise DecodeError("BAD_MAGIC_BYTE", f"magic byte is {magic}, expected 0 (Confluent framing)")
    try:
        schema = writer_schema(schema_id)
    except RegistryUnavailable:
        raise
    except FraudPipelineError as exc:  # SchemaNotFound, or not an Avro schema
        raise DecodeError("UNKNOWN_SCHEMA_ID", f"schema id {schema_id} cannot be resolved: {exc}") from exc
    buf = io.BytesIO(value)
    buf.seek(_HEADER.size)
    try:
        record = fastavro.schemaless_reader(buf, schema, reader_schema)
    except Exception as exc:  # fastavro raises a zoo of types on corrupt bytes
        raise DecodeError("AVRO_DECODE", f"Avro body does not match schema id {schema_id}: {exc!r}") from exc
    if buf.tell() != len(value):
        raise DecodeError("AVRO_DECODE", f"{len(value) - buf.tell()} trailing bytes after the Avro body")
    if not isinstance(record, dict):
        raise DecodeError("AVRO_DECODE", f"schema id {schema_id} is not a record schema")
    return record


def encode(schema_id: int, schema: Any, record: dict[str, Any], validate: bool = True) -> bytes:
    """Encode ``record`` with Confluent framing.

    Args:
        validate: check every field first (fastavro's writer coerces silently, a string into a
            boolean). Only records built field by field by our own typed code, whose shape a unit
            test checks against the schema, skip it: on the decision path it is half the cost.
    Raises:
        SerializationError: naming the field and value that do not fit the schema.
    """
    if validate:
        problem = describe_misfit(record, schema)
        if problem is not None:
            raise SerializationError(f"record does not fit schema {schema.get('name', '?')}: {problem}")
    buf = io.BytesIO()
    buf.write(_HEADER.pack(MAGIC, schema_id))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def describe_misfit(record: dict[str, Any], schema: Any) -> str | None:
    """Name each field and value of ``record`` that do not fit ``schema`` (a card id masked), or None."""
    try:
        fastavro.validation.validate(record, schema, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        parts = []
        for err in exc.errors:
            name = str(getattr(err, "field", "?")).rsplit(".", 1)[-1]
            datum = getattr(err, "datum", None)
            shown = mask_card(str(datum)) if name == "card_id" else repr(datum)
            expected = getattr(err, "schema", None)
            if isinstance(expected, dict):
                expected = expected.get("symbols") or expected.get("type")
            parts.append(f"field {name!r}={shown} does not fit the schema (expected {expected})")
        return "; ".join(parts)
    return None
