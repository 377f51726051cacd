"""Confluent wire framing: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Decoding raises :class:`DecodeError` for a bad record (its ``error_type`` becomes the DLQ reason) and
:class:`RegistryUnavailable` when the writer schema cannot be fetched right now: that is an outage
to wait out, never the record's fault.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro

from fraud_core.cards import mask_card
from fraud_core.exceptions import (
    DecodeError,
    FraudPipelineError,
    RegistryUnavailable,
    SerializationError,
    ValidationError,
)

MAGIC = 0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    except (OverflowError, ValueError) as exc:
        # A timestamp-millis long beyond datetime's range (year 9999) fails fastavro's conversion
        # with a message naming no field; find the field and value (only on this failure path).
        raise _timestamp_out_of_range(value, schema, reader_schema) or DecodeError(
            "AVRO_DECODE", f"Avro body does not match schema id {schema_id}: {_shortened(repr(exc))}"
        ) from exc
    except Exception as exc:  # fastavro raises a zoo of types on corrupt bytes
        raise DecodeError(
            "AVRO_DECODE", f"Avro body does not match schema id {schema_id}: {_shortened(repr(exc))}"
        ) from exc
    if buf.tell() != len(value):
        raise DecodeError("AVRO_DECODE", f"{len(value) - buf.tell()} trailing bytes after the Avro body")
    if not isinstance(record, dict):
        raise DecodeError("AVRO_DECODE", f"schema id {schema_id} is not a record schema")
    return record


def _shortened(detail: str, limit: int = 200) -> str:
    """fastavro's error text, cut: a schema mismatch prints both schemas whole (kilobytes)."""
    return detail if len(detail) <= limit else f"{detail[:limit]}... ({len(detail)} characters)"


_TIMESTAMPS = ("timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros")
# The epoch offsets that datetime can hold (0001-01-01 .. 9999-12-31), in milliseconds.
_MIN_MS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)


def _plain_timestamps(schema: Any) -> tuple[Any, dict[str, int]]:
    """A copy of a parsed record schema whose top-level timestamp fields are plain longs, and
    those fields' names with their units per millisecond (1, or 1000 for micros)."""
    fields, units = [], {}
    for field in schema.get("fields", []):
        kind = field["type"]
        if isinstance(kind, dict) and kind.get("logicalType") in _TIMESTAMPS:
            units[field["name"]] = 1000 if kind["logicalType"].endswith("micros") else 1
            field = {**field, "type": kind["type"]}
        fields.append(field)
    return {**schema, "fields": fields}, units


def _timestamp_out_of_range(value: bytes, schema: Any, reader_schema: Any | None) -> ValidationError | None:
    """The error naming the timestamp field whose value datetime cannot hold, if that is what failed."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    writer, units = _plain_timestamps(schema)
    reader = _plain_timestamps(reader_schema)[0] if isinstance(reader_schema, dict) else None
    try:
        record = fastavro.schemaless_reader(io.BytesIO(value[_HEADER.size :]), writer, reader)
    except Exception:  # something else is wrong with the body: the generic error stands
        return None
    if not isinstance(record, dict):
        return None
    for name, unit in units.items():
        raw = record.get(name)
        if isinstance(raw, int) and not _MIN_MS * unit <= raw <= _MAX_MS * unit:
            return ValidationError(name, raw, "is outside the range of an Avro timestamp (years 1 to 9999)")
    return None


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
