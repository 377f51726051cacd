"""``payments.labels`` records: decoding, validation, and the typed label the features learn from."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import schemas
from fraud_core import avro
from fraud_core.exceptions import ValidationError
from fraud_core.transaction import ID_PATTERN, UUID_PATTERN

_LABEL_READER = schemas.load(schemas.LABEL)
_UUID = re.compile(UUID_PATTERN)
_ID = re.compile(ID_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FRAUD_TYPE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


def epoch_ms(value: datetime | int) -> int:
    """A decoded Avro ``timestamp-millis`` (a datetime) or a plain long, as epoch milliseconds."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MS
    return int(value)


@dataclass(frozen=True, slots=True)
class Label:
    """What the label-driven features need of one label: which payment, which merchant and card,
    whether it was fraud, and from when it is known (``labelled_at``, epoch ms UTC)."""

    event_id: str
    is_fraud: bool
    labelled_at: int
    card_id: str | None = None
    merchant_id: str | None = None
    event_time: int | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Label:
        return cls(
            event_id=record["event_id"],
            is_fraud=bool(record["is_fraud"]),
            labelled_at=epoch_ms(record["labelled_at"]),
            card_id=record.get("card_id"),
            merchant_id=record.get("merchant_id"),
            event_time=None if record.get("event_time") is None else epoch_ms(record["event_time"]),
        )

    def fields(self) -> tuple[Any, ...]:
        """``Label(*label.fields())`` rebuilds it (what crosses a job hop, marshalled)."""
        return (
            self.event_id,
            self.is_fraud,
            self.labelled_at,
            self.card_id,
            self.merchant_id,
            self.event_time,
        )


def decode_label(value: bytes | None, writer_schema: Callable[[int], Any]) -> dict[str, Any]:
    """A ``payments.labels`` value, decoded and checked.

    Raises:
        DecodeError: the value is not a label (its ``error_type`` says why; a ValidationError names
            the field and value).
    """
    record = avro.decode(value, writer_schema, _LABEL_READER)
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not _UUID.fullmatch(event_id):
        raise ValidationError("event_id", event_id, "must be a UUID in canonical 8-4-4-4-12 hex form")
    fraud_type = record.get("fraud_type")
    if fraud_type is not None and not (isinstance(fraud_type, str) and _FRAUD_TYPE.fullmatch(fraud_type)):
        raise ValidationError("fraud_type", fraud_type, "must be null or 1-64 printable characters")
    for name in ("card_id", "merchant_id"):
        value_ = record.get(name)
        if value_ is not None and not (isinstance(value_, str) and _ID.fullmatch(value_)):
            raise ValidationError(name, value_, "must be null or 1-64 characters of letters, digits, _ . : -")
    return record
