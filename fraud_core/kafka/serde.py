"""Avro serializer and deserializer callables in the shape of confluent-kafka's ``Serializer`` and
``Deserializer`` contract (``__call__(obj, ctx)``), built on :mod:`fraud_core.avro` (Confluent
framing, typed decode errors) and :class:`~fraud_core.registry.RegistryClient` (typed registry
errors). Every place that writes or reads pipeline values uses these: the producer, the job's
operators, the consumers, the backtest, the bench and the tests.

Errors are typed by what the caller must do: :class:`~fraud_core.exceptions.DecodeError` and
:class:`~fraud_core.exceptions.SerializationError` mean a bad record (dead-letter it or refuse it);
:class:`~fraud_core.exceptions.RegistryUnavailable` means an outage (retry, then fail over).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka.serialization import Deserializer, MessageField, SerializationContext, Serializer

import schemas
from fraud_core import avro
from fraud_core.exceptions import SerializationError
from fraud_core.registry import RegistryClient


def subject_of(topic: str) -> str:
    """The registry subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def value_context(topic: str) -> SerializationContext:
    """The serialization context of a value written to or read from ``topic``."""
    return SerializationContext(topic, MessageField.VALUE)


class AvroSerializer(Serializer):
    """Record dict -> Confluent-framed Avro of ``schemas/<schema_name>.avsc``.

    The schema id is the one our schema has under ``<topic>-value``, looked up once per topic and
    never registered from here: the stack registers schemas at start-up, so a writer cannot widen
    a contract by accident, and a schema that is not registered fails at :meth:`schema_id`.

    Args:
        registry: the registry client (its errors are typed).
        schema_name: the ``.avsc`` to write with (see :mod:`schemas`).
        validate: check every field first (fastavro's writer coerces silently, a string into a
            boolean). Only records our own typed code builds field by field, whose shape a unit test
            checks against the schema, skip it: on the decision path it is half the cost.
    """

    def __init__(self, registry: RegistryClient, schema_name: str, *, validate: bool = True) -> None:
        self.registry = registry
        self.schema_name = schema_name
        self.validate = validate
        self._schema = schemas.load(schema_name)
        self._ids: dict[str, int] = {}

    def schema_id(self, topic: str) -> int:
        """The id of our schema under ``topic``'s subject (cached).

        Raises:
            SchemaNotFound: it is not registered there; RegistryUnavailable: the registry is down.
        """
        schema_id = self._ids.get(topic)
        if schema_id is None:
            schema_id = self.registry.lookup_id(subject_of(topic), schemas.load_text(self.schema_name))
            self._ids[topic] = schema_id
        return schema_id

    def encode(self, topic: str, record: dict[str, Any]) -> bytes:
        """The framed value of ``record`` for ``topic``: the call without a context object.

        Raises:
            SerializationError: naming the field and value that do not fit the schema.
        """
        return avro.encode(self.schema_id(topic), self._schema, record, self.validate)

    def __call__(self, obj: dict[str, Any] | None, ctx: SerializationContext | None = None) -> bytes | None:
        if obj is None:
            return None
        if ctx is None:
            raise SerializationError(
                f"serializing a {self.schema_name} record needs a context naming its topic"
            )
        return self.encode(ctx.topic, obj)


class AvroDeserializer(Deserializer):
    """Confluent-framed Avro value -> record dict, resolved into ``schemas/<schema_name>.avsc``.

    Args:
        writer_schema: the parsed writer schema of an id, usually ``RegistryClient.parsed_schema``.
        schema_name: the reader schema, so values of newer writers with extra fields decode; None
            decodes with the writer's schema as is.
    Raises (on call):
        DecodeError: the value is bad; its ``error_type`` is the dead-letter reason.
        RegistryUnavailable: the writer schema cannot be fetched now (never the record's fault).
    """

    def __init__(self, writer_schema: Callable[[int], Any], schema_name: str | None = None) -> None:
        self.writer_schema = writer_schema
        self._reader = schemas.load(schema_name) if schema_name else None

    def __call__(self, value: bytes | None, ctx: SerializationContext | None = None) -> dict[str, Any]:
        return avro.decode(value, self.writer_schema, self._reader)
