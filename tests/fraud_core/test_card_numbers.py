"""A card_id must be a token, never digits passing the Luhn check whatever the separators; no
error message or dead-letter record shows more than a PAN's last four digits; long and non-ASCII
identifiers are refused naming the field, without echoing the whole value. Unit tier."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

import schemas
from fraud_core import avro
from fraud_core.action_logic import parse_decision
from fraud_core.cards import is_pan, mask_pans
from fraud_core.exceptions import CardNumberRefused, ValidationError
from fraud_core.scoring_step import Intake
from fraud_core.transaction import validate
from tests.records import NOW, payment

PANS = [
    "4111111111111111",
    "4111-1111-1111-1111",
    "4111 1111 1111 1111",
    "4111.1111.1111.1111",
    "4111_1111_1111_1111",
    "4111:1111:1111:1111",
    "4111 1111-1111.1111",
    "378282246310005",  # 15-digit Amex
    "6011 0009 9013 9424",
]


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


@pytest.mark.parametrize("pan", PANS)
def test_a_pan_in_card_id_is_refused_whatever_the_separators_and_never_echoed(pan: str) -> None:
    assert is_pan(pan)
    with pytest.raises(CardNumberRefused) as info:
        validate(payment(card_id=pan), now_ms=NOW)
    message = str(info.value)
    assert info.value.field == "card_id" and info.value.error_type == "VALIDATION"
    assert _digits(pan) not in _digits(message) and pan not in message
    assert mask_pans(pan) in message and "masked" in message


@pytest.mark.parametrize("token", ["tok_1", "card_abcdef1234", "4111111111111112", "1234", "c-0001-0002"])
def test_tokens_are_not_pans(token: str) -> None:
    assert not is_pan(token)
    assert validate(payment(card_id=token), now_ms=NOW).card_id == token


@pytest.mark.parametrize("field", ["user_id", "merchant_id", "device_id"])
def test_a_pan_in_another_field_is_masked_in_the_error(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(payment(**{field: "4111 1111 1111 1111"}), now_ms=NOW)
    assert info.value.field == field and "**** **** **** 1111" in str(info.value)
    assert "4111 1111" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", "u" * 65),
        ("user_id", "u" * 100_000),
        ("user_id", "usér"),
        ("user_id", "用户"),
        ("user_id", "u\u200b1"),
        ("user_id", ""),
        ("merchant_id", "m\x00"),
        ("card_id", "tok 1"),
        ("country", "ÄT"),
        ("merchant_category", "٥٤١١"),
    ],
)
def test_long_and_non_ascii_identifiers_are_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(payment(**{field: value}), now_ms=NOW)
    assert info.value.field == field
    assert len(str(info.value)) < 300


class fake_registry:  # named like the fakes of tests/README.md
    def parsed_schema(self, schema_id: int) -> Any:
        return schemas.load(schemas.TRANSACTION)


class fake_serializer:  # keeps what it is given instead of asking a registry for an id
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def encode(self, topic: str, record: dict[str, Any]) -> bytes:
        self.records.append(record)
        return b""


@pytest.mark.parametrize("pan", PANS)
def test_the_dead_letter_record_keeps_the_event_with_the_pan_masked(pan: str) -> None:
    encoder = fake_serializer()
    intake = Intake(fake_registry(), encoder, "dlq", "test")  # type: ignore[arg-type]
    raw = avro.encode(1, schemas.load(schemas.TRANSACTION), payment(card_id=pan))
    with pytest.raises(CardNumberRefused) as info:
        intake.decode(raw, NOW)
    intake.dead_letter(("in", 0, 7), b"u-1", raw, info.value, {})
    (envelope,) = encoder.records
    assert pan.encode() not in envelope["value"] and _digits(pan).encode() not in envelope["value"]
    assert "masked" in envelope["error_message"] and pan not in envelope["error_message"]
    kept = fastavro.schemaless_reader(
        io.BytesIO(envelope["value"][5:]), schemas.load(schemas.TRANSACTION), None
    )
    assert kept["card_id"] == mask_pans(pan) and kept["event_id"] == payment()["event_id"]


def test_the_action_consumer_refuses_a_pan_as_well() -> None:
    decision = {
        "event_id": "e-1", "user_id": "u-1", "decision": "FLAGGED", "card_id": "4111-1111-1111-1111",
        "amount_minor": 1, "currency": "EUR", "country": "DE", "event_time": NOW,
    }  # fmt: skip
    with pytest.raises(CardNumberRefused, match=r"\*\*\*\*-\*\*\*\*-\*\*\*\*-1111"):
        parse_decision(decision)
