"""The dead-letter record (schema ``dead_letter.avsc``, docs/INTERFACES.md, ``payments.dlq``): a record that
failed, kept with its original bytes, where it came from and why. Changing the DLQ record touches
only this file (and the schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fraud_core.cards import mask_pans
from fraud_core.clock import now_ms
from fraud_core.exceptions import CardNumberRefused, DecodeError, FraudPipelineError
from fraud_core.kafka.headers import correlation_id

# Where a consumed record came from: topic, partition, offset.
Source = tuple[str, int, int]


def error_type_of(error: FraudPipelineError, default: str) -> str:
    """The DLQ reason: a :class:`DecodeError`'s own ``error_type``, else ``default``."""
    return error.error_type if isinstance(error, DecodeError) else default


def dead_letter_record(
    source: Source,
    key: bytes | None,
    value: bytes | None,
    error: FraudPipelineError,
    stage: str,
    headers: Mapping[str, bytes | None],
    *,
    error_type: str = "PROCESSING",
    failed_at: int | None = None,
) -> dict[str, Any]:
    """The dead-letter record of the record at ``source`` that failed with ``error``.

    Args:
        key, value: the original bytes; a card number a :class:`CardNumberRefused` found in the
            value is masked in place (same length, so the value is still the original Avro record).
        stage: the component that gave up on it (``scoring-job``, ``action-consumer``, ...).
        headers: the record's headers; its ``correlation_id`` is kept.
        error_type: the reason when ``error`` is not a :class:`DecodeError` (which names its own).
        failed_at: epoch milliseconds; defaults to now.
    """
    topic, partition, offset = source
    if isinstance(error, CardNumberRefused) and value is not None:
        value = value.replace(error.pan.encode(), mask_pans(error.pan).encode())
    return {
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": key,
        "value": value,
        "error_type": error_type_of(error, error_type),
        "error_message": str(error),
        "failed_at": now_ms() if failed_at is None else failed_at,
        "stage": stage,
        "correlation_id": correlation_id(headers) or None,
    }
