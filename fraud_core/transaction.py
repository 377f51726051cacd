"""The typed payment event and its validation: the only gate between raw records and features."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from fraud_core.cards import is_pan
from fraud_core.exceptions import CardNumberRefused, ValidationError
from fraud_core.reference import CHANNELS, CURRENCIES, MAX_AMOUNT_MINOR

# The identifier patterns the scoring service checks too (inference_service/api/payloads.py imports
# them): an event this validation lets through is never one the service refuses. Both ends match
# the whole string (``fullmatch`` here, anchors there): ``$`` alone would let a trailing newline in.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_UUID = re.compile(UUID_PATTERN)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_MCC = re.compile(r"^[0-9]{4}$")
_ID = re.compile(ID_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
DAY_MS = 24 * 3600 * 1000
# No card payment of this system predates it: an earlier event_time is a broken record.
EVENT_TIME_FLOOR_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class EventTimeBounds:
    """How far an ``event_time`` may lie from the processing time; outside, the event is refused
    (dead-lettered as VALIDATION), never clamped: a clamped time would be a made-up fact.

    ``max_ahead_ms`` (default one day) keeps a far-future event from moving a user's velocity
    horizon forward, which would prune the user's whole history and stop pruning after it.
    ``max_age_ms`` (default None: only the fixed floor of 2000-01-01 applies) refuses events older
    than that. It is off by default because the simulator's event time starts at a fixed date and
    backtests replay months-old topics; a deployment that only sees live traffic sets it (30 days,
    say) with ``EVENT_TIME_MAX_AGE_MS``.
    """

    max_ahead_ms: int = DAY_MS
    max_age_ms: int | None = None

    def check(self, event_time: int, now_ms: int) -> None:
        """Raises:
        ValidationError: naming ``event_time``, its value, the bound and the processing time."""
        if event_time > now_ms + self.max_ahead_ms:
            raise ValidationError(
                "event_time",
                event_time,
                f"more than {self.max_ahead_ms} ms ahead of the processing time {_iso(now_ms)} "
                f"(it is {_iso(event_time)}; bound: EVENT_TIME_MAX_AHEAD_MS)",
            )
        if event_time < EVENT_TIME_FLOOR_MS:
            raise ValidationError(
                "event_time",
                event_time,
                f"before 2000-01-01 (it is {_iso(event_time)}): not a real payment time",
            )
        if self.max_age_ms is not None and event_time < now_ms - self.max_age_ms:
            raise ValidationError(
                "event_time",
                event_time,
                f"more than {self.max_age_ms} ms behind the processing time {_iso(now_ms)} "
                f"(it is {_iso(event_time)}; bound: EVENT_TIME_MAX_AGE_MS)",
            )


DEFAULT_EVENT_TIME_BOUNDS = EventTimeBounds()


def _iso(ms: int) -> str:
    try:
        return (_EPOCH + ms * _MS).isoformat(timespec="milliseconds")
    except OverflowError:
        return "beyond year 9999"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Transaction:
    """A validated ``payments.initiated`` event. ``event_time`` is epoch milliseconds, UTC."""

    event_id: str
    user_id: str
    card_id: str
    amount_minor: int
    currency: str
    merchant_id: str
    merchant_category: str
    country: str
    channel: str
    event_time: int
    device_id: str | None = None

    def fields(self) -> tuple[Any, ...]:
        """The field values in order: ``Transaction(*txn.fields())`` rebuilds it (cheaper than astuple)."""
        return (
            self.event_id,
            self.user_id,
            self.card_id,
            self.amount_minor,
            self.currency,
            self.merchant_id,
            self.merchant_category,
            self.country,
            self.channel,
            self.event_time,
            self.device_id,
        )

    def to_record(self) -> dict[str, Any]:
        """The Avro record for this transaction (``payments.initiated`` schema). A shallow dict, not
        ``dataclasses.asdict``: the fields are immutable scalars, and its deep copy was a third of
        the producer's time per event."""
        return dict(zip(_FIELD_NAMES, self.fields(), strict=True))


_FIELD_NAMES = tuple(f.name for f in fields(Transaction))


def _require_id(field: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValidationError(field, value, "must be 1-64 characters of letters, digits, _ . : -")
    return value


def validate(
    record: dict[str, Any], bounds: EventTimeBounds = DEFAULT_EVENT_TIME_BOUNDS, now_ms: int | None = None
) -> Transaction:
    """Check a decoded ``payments.initiated`` record against the business rules; ``event_time``
    within ``bounds`` of ``now_ms`` (the processing time; default the wall clock).

    Raises:
        ValidationError: naming the first offending field and its value.
    """
    event_id = record.get("event_id")
    # Only the canonical 8-4-4-4-12 form: uuid.UUID also takes "urn:uuid:...", braces and 32 bare
    # hex digits, which the scoring service refuses and joins on event_id would not match.
    if not isinstance(event_id, str) or not _UUID.fullmatch(event_id):
        raise ValidationError("event_id", event_id, "must be a UUID in canonical 8-4-4-4-12 hex form")
    user_id = _require_id("user_id", record.get("user_id"))
    raw_card = record.get("card_id")
    # Before the pattern check, whose error would echo a PAN written with spaces.
    if isinstance(raw_card, str) and is_pan(raw_card):
        raise CardNumberRefused("card_id", raw_card)
    card_id = _require_id("card_id", raw_card)
    amount = record.get("amount_minor")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise ValidationError("amount_minor", amount, "must be a non-negative integer of minor units")
    if amount > MAX_AMOUNT_MINOR:
        raise ValidationError("amount_minor", amount, f"exceeds the cap of {MAX_AMOUNT_MINOR}")
    currency = record.get("currency")
    if currency not in CURRENCIES:
        raise ValidationError("currency", currency, "unknown ISO 4217 currency")
    merchant_id = _require_id("merchant_id", record.get("merchant_id"))
    mcc = record.get("merchant_category")
    if not isinstance(mcc, str) or not _MCC.fullmatch(mcc):
        raise ValidationError("merchant_category", mcc, "must be a 4-digit MCC")
    country = record.get("country")
    if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
        raise ValidationError("country", country, "must be an ISO 3166-1 alpha-2 code in upper case")
    channel = record.get("channel")
    if channel not in CHANNELS:
        raise ValidationError("channel", channel, f"must be one of {', '.join(CHANNELS)}")
    event_time = record.get("event_time")
    if isinstance(event_time, datetime):  # fastavro returns aware datetimes for timestamp-millis
        event_time = (event_time - _EPOCH) // _MS
    if not isinstance(event_time, int) or event_time <= 0:
        raise ValidationError("event_time", event_time, "must be a positive epoch-millisecond timestamp")
    bounds.check(event_time, wall_clock_ms() if now_ms is None else now_ms)
    device_id = record.get("device_id")
    if device_id is not None:
        device_id = _require_id("device_id", device_id)
    return Transaction(
        event_id=str(event_id),
        user_id=user_id,
        card_id=card_id,
        amount_minor=amount,
        currency=str(currency),
        merchant_id=merchant_id,
        merchant_category=mcc,
        country=country,
        channel=str(channel),
        event_time=event_time,
        device_id=device_id,
    )
