"""The binary body's server-side parse in-process: the columns it expects are exactly the JSON item's
fields, its matrix is the features in FEATURE_NAMES order, and its refusals name row, field, value."""

from __future__ import annotations

import math
import uuid
from typing import Any

import msgpack
import pytest

from fraud_core.feature_catalog import FEATURE_BOUNDS, FEATURE_NAMES
from fraud_core.scoring_wire import ITEM_COLUMNS, encode_request
from inference_service.api.columnar import InvalidColumns, parse_batch
from inference_service.api.payloads import ScoreItem


def _item(i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=i + 1)),
        "user_id": f"user-{i}",
        "amount_minor": 100 + i,
        "currency": "EUR",
        "merchant_category": "5411",
        "country": "BE",
        "channel": "POS",
        "event_time": 1_700_000_000_000 + i,
        # Each value inside its bounds and different per row and feature.
        "features": {n: min(FEATURE_BOUNDS[n][1], (i + j) / 10) for j, n in enumerate(FEATURE_NAMES)},
    }


def test_the_columns_are_the_json_item_fields() -> None:
    assert set(ITEM_COLUMNS) | {"features"} == set(ScoreItem.model_fields)


def test_a_valid_body_gives_the_event_ids_and_the_feature_matrix() -> None:
    items = [_item(i) for i in range(4)]
    batch = parse_batch(encode_request(items))
    assert batch.event_ids == [i["event_id"] for i in items]
    assert batch.x.tolist() == [[i["features"][n] for n in FEATURE_NAMES] for i in items]


def _refusal(body: bytes) -> list[tuple[tuple[Any, ...], Any]]:
    with pytest.raises(InvalidColumns) as refused:
        parse_batch(body)
    return [(tuple(e["loc"]), e["input"]) for e in refused.value.errors]


def test_values_out_of_bounds_or_not_finite_are_named_by_row_feature_and_value() -> None:
    items = [_item(i) for i in range(3)]
    items[0]["features"]["is_foreign"] = 2.0
    items[2]["features"]["amount_eur"] = -0.5
    items[1]["features"]["risk_tier"] = math.nan
    refusal = _refusal(encode_request(items))
    assert refusal[0] == (("body", "items", 0, "features", "is_foreign"), 2.0)
    assert refusal[2] == (("body", "items", 2, "features", "amount_eur"), -0.5)
    assert refusal[1][0] == ("body", "items", 1, "features", "risk_tier") and math.isnan(refusal[1][1])


def test_a_field_breaking_its_item_rule_is_named_by_row_and_value() -> None:
    items = [_item(i) for i in range(3)]
    items[1]["merchant_category"] = "54111"
    items[2]["event_time"] = True  # strict integer, as in JSON
    assert _refusal(encode_request(items)) == [
        (("body", "items", 1, "merchant_category"), "54111"),
        (("body", "items", 2, "event_time"), True),
    ]


def test_a_body_that_is_not_a_map_or_has_no_rows_is_refused() -> None:
    assert _refusal(b"\x93\x01\x02\x03") == [(("body",), "list")]
    assert _refusal(msgpack.packb({"event_id": []})) == [(("body", "event_id"), [])]
    assert _refusal(b"\x81\xa1") == [(("body",), None)]
