"""Sample records for in-process tests: one valid payment, changed field by field."""

from __future__ import annotations

from typing import Any

from fraud_core.transaction import Transaction

NOW = 1_796_000_000_000  # 2026-11-30, the processing time the unit tests pretend it is
SAMPLE_EVENT_ID = "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60"


def payment(**overrides: Any) -> dict[str, Any]:
    """A valid ``payments.initiated`` record one minute before :data:`NOW`, with ``overrides``."""
    return {
        "event_id": SAMPLE_EVENT_ID,
        "user_id": "u-1",
        "card_id": "tok_1",
        "amount_minor": 1_000,
        "currency": "EUR",
        "merchant_id": "m-1",
        "merchant_category": "5411",
        "country": "DE",
        "channel": "ECOM",
        "event_time": NOW - 60_000,
        "device_id": None,
    } | overrides


def transaction(**overrides: Any) -> Transaction:
    """:func:`payment` as the decoded :class:`Transaction` (not validated: tests may bend it)."""
    return Transaction(**payment(**overrides))
