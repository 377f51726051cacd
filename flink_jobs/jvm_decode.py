"""``DECODE_IN=jvm``: payments decoded in the TaskManager's JVM, before the first Python operator.

The Java scalar function ``decode_payment(v, registry_url)`` (``deploy/maven/decoder``, built by
``make fetch`` into ``.stack/lib/decoder/fraud-decoder.jar`` and shipped with the job like the
Kafka connector) reads the Confluent framing, fetches and caches the writer schema by id from the
registry's Confluent-compatible API and resolves the Avro body into ``payment_initiated.avsc``,
as :func:`fraud_core.avro.decode` does. It returns one row: either the dead-letter reason
(``error_type``, ``error_message``; the same reasons and details as the Python decoder) or the
fields. A registry outage fails the task inside the function (retried about 7 s first), never a
dead letter.

Python keeps what is one declaration in ``fraud_core``: the timestamp range, the business rules
(:func:`fraud_core.transaction.validate`), the key check and the dead-letter record, built from
the original bytes that travel beside the decoded fields. ``DECODE_IN=python`` (default) decodes
the bytes in ``FeaturesFunction`` with :class:`fraud_core.scoring_step.Intake`.
"""

from __future__ import annotations

from typing import Any

from pyflink.common import Row, Types

from fraud_core.avro import _MAX_MS, _MIN_MS
from fraud_core.exceptions import DecodeError, ValidationError
from fraud_core.transaction import DEFAULT_EVENT_TIME_BOUNDS, EventTimeBounds, Transaction, validate

FUNCTION = "decode_payment"
JAVA_CLASS = "dev.fraudpipe.decoder.DecodePayment"

# The function's result (DecodePayment.ROW_TYPE): the dead-letter reason, or the reader schema's fields.
FIELDS = (
    "event_id",
    "user_id",
    "card_id",
    "amount_minor",
    "currency",
    "merchant_id",
    "merchant_category",
    "country",
    "channel",
    "event_time",
    "device_id",
)
_LONGS = {"amount_minor", "event_time"}
DECODED = Types.ROW_NAMED(
    ["error_type", "error_message", *FIELDS],
    [Types.STRING(), Types.STRING()] + [Types.LONG() if f in _LONGS else Types.STRING() for f in FIELDS],
)
BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# SOURCE_RECORD of flink_jobs.operators plus the decoded value.
DECODED_SOURCE_RECORD = Types.ROW_NAMED(
    ["k", "v", "partition", "offset", "headers", "topic", "decoded"],
    [BYTES, BYTES, Types.INT(), Types.LONG(), Types.MAP(Types.STRING(), BYTES), Types.STRING(), DECODED],
)


def source_query(registry_url: str, table: str = "source_events") -> str:
    """The keyed source rows with the value decoded in Java beside the original bytes."""
    url = registry_url.replace("'", "''")
    return (
        "SELECT CAST(k AS STRING) AS user_key, ROW(k, v, `partition`, `offset`, headers, `topic`, "
        f"{FUNCTION}(v, '{url}')) AS rec FROM {table}"
    )


def register(t_env: Any) -> None:
    """Make ``decode_payment`` known to ``t_env``; the jar must be in ``pipeline.jars``."""
    t_env.create_java_temporary_system_function(FUNCTION, JAVA_CLASS)


def transaction(
    decoded: Row, bounds: EventTimeBounds = DEFAULT_EVENT_TIME_BOUNDS, now_ms: int | None = None
) -> Transaction:
    """The validated event of a ``decode_payment`` row, as ``Intake.decode`` gives it for the bytes.

    Raises:
        DecodeError: its ``error_type`` is the dead-letter reason (the JVM's, or ``VALIDATION``).
    """
    error_type = decoded[0]
    if error_type is not None:
        raise DecodeError(error_type, decoded[1])
    record = dict(zip(FIELDS, decoded[2:], strict=True))
    event_time = record["event_time"]
    # Python's decoder turns timestamp-millis into a datetime and fails, naming the field, beyond
    # years 1..9999 (fraud_core.avro._timestamp_out_of_range); the JVM hands the long over as is.
    if not _MIN_MS <= event_time <= _MAX_MS:
        raise ValidationError(
            "event_time", event_time, "is outside the range of an Avro timestamp (years 1 to 9999)"
        )
    return validate(record, bounds, now_ms)
