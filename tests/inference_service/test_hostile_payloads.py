"""The scoring API's request model against hostile values: each is a 422 whose ``loc`` names the
field (unicode and very long identifiers, infinity and NaN, huge numbers, wrong types, non-JSON).
Unit tier: the request models alone, as the plain-ASGI routes validate them."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from fraud_core.feature_catalog import FEATURE_NAMES
from inference_service.api.payloads import BatchRequest, ScoreItem
from inference_service.api.routes.score import validation_error_body

ITEM: dict[str, Any] = {
    "event_id": "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60",
    "user_id": "u-1",
    "amount_minor": 1_000,
    "currency": "EUR",
    "merchant_category": "5411",
    "country": "DE",
    "channel": "ECOM",
    "event_time": 1_767_225_600_000,
    "features": dict.fromkeys(FEATURE_NAMES, 1.0),
}


def _body(**overrides: Any) -> bytes:
    return json.dumps(ITEM | overrides).encode()


def _feature(name: str, raw: str) -> bytes:
    # Infinity, NaN and 1e999 are not JSON, but Python's json and many clients write them.
    return _body(features=dict.fromkeys(FEATURE_NAMES, 1.0) | {name: 12345.678}).replace(
        b"12345.678", raw.encode()
    )


CASES: list[tuple[str, bytes, tuple[Any, ...]]] = [
    ("unicode user_id", _body(user_id="usér"), ("user_id",)),
    ("zero-width user_id", _body(user_id="u\u200b1"), ("user_id",)),
    ("very long user_id", _body(user_id="u" * 100_000), ("user_id",)),
    ("urn event_id", _body(event_id="urn:uuid:3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60"), ("event_id",)),
    ("32-hex event_id", _body(event_id="3f1c2a9e8b7d4c6e9f0a1b2c3d4e5f60"), ("event_id",)),
    ("event_id with newline", _body(event_id=ITEM["event_id"] + "\n"), ("event_id",)),
    ("huge event_time", _body(event_time=2**62), ("event_time",)),
    (
        "event_time 1e999",
        _body(event_time=0).replace(b'"event_time": 0', b'"event_time": 1e999'),
        ("event_time",),
    ),
    ("event_time as string", _body(event_time="1767225600000"), ("event_time",)),
    (
        "amount 1e999",
        _body(amount_minor=0).replace(b'"amount_minor": 0', b'"amount_minor": 1e999'),
        ("amount_minor",),
    ),
    ("amount float", _body(amount_minor=10.5), ("amount_minor",)),
    ("amount bool", _body(amount_minor=True), ("amount_minor",)),
    ("feature Infinity", _feature("amount_eur", "Infinity"), ("features", "amount_eur")),
    ("feature NaN", _feature("amount_eur", "NaN"), ("features", "amount_eur")),
    ("feature 1e999", _feature("amount_eur", "1e999"), ("features", "amount_eur")),
    ("feature negative", _feature("txn_count_1m", "-1"), ("features", "txn_count_1m")),
    ("feature string", _feature("hour_of_day", '"noon"'), ("features", "hour_of_day")),
    ("unknown feature", _body(features=dict.fromkeys(FEATURE_NAMES, 1.0) | {"x": 1.0}), ("features", "x")),
    (
        "missing feature",
        _body(features=dict.fromkeys(FEATURE_NAMES[1:], 1.0)),
        ("features", FEATURE_NAMES[0]),
    ),
    ("lower-case country", _body(country="de"), ("country",)),
    ("unicode MCC digits", _body(merchant_category="٥٤١١"), ("merchant_category",)),
    ("unknown currency", _body(currency="XXX"), ("currency",)),
    ("unknown channel", _body(channel="SATELLITE"), ("channel",)),
]


@pytest.mark.parametrize(("body", "loc"), [(b, loc) for _, b, loc in CASES], ids=[n for n, _, _ in CASES])
def test_a_hostile_value_is_refused_naming_the_field(body: bytes, loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        ScoreItem.model_validate_json(body)
    errors = info.value.errors(include_url=False)
    assert any(tuple(e["loc"][: len(loc)]) == loc for e in errors), errors
    answer = orjson.loads(validation_error_body(errors))  # the 422 body can always be written
    assert answer["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"items": []}',
        b'{"items": null}',
        b'{"items": [1]}',
        b"{" * 10_000,
    ],
)
def test_a_batch_body_that_is_not_a_batch_is_refused(body: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        BatchRequest.model_validate_json(body)
    assert orjson.loads(validation_error_body(info.value.errors(include_url=False)))["detail"]


def test_the_baseline_item_is_valid() -> None:
    assert ScoreItem.model_validate_json(_body()).user_id == "u-1"
