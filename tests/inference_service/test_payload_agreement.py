"""The stream job's intake validation and the scoring service's request model agree on every
identifier: an event the intake lets through is never one the service refuses (a refusal used to
send a whole batch to the fallback). Unit tier: no processes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from pydantic import ValidationError as PydanticValidationError

from fraud_core.decision import scoring_request
from fraud_core.exceptions import ValidationError
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.scoring_client import refused_items
from fraud_core.transaction import Transaction, validate
from inference_service.api.payloads import BatchRequest, ScoreItem
from inference_service.api.routes.score import _invalid

TXN = Transaction(
    event_id="3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60",
    user_id="u-1",
    card_id="tok_1",
    amount_minor=12_345,
    currency="EUR",
    merchant_id="m-1",
    merchant_category="5411",
    country="DE",
    channel="ECOM",
    event_time=1_700_000_000_000,
)
FEATURES = dict.fromkeys(FEATURE_NAMES, 1.0)

CASES: list[tuple[str, Any]] = [
    ("event_id", "3F1C2A9E-8B7D-4C6E-9F0A-1B2C3D4E5F60"),
    ("event_id", "urn:uuid:3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60"),
    ("event_id", "3f1c2a9e8b7d4c6e9f0a1b2c3d4e5f60"),
    ("event_id", "{3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60}"),
    ("event_id", "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60\n"),
    ("event_id", " 3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60"),
    ("event_id", "\uff13f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60"),
    ("user_id", "user_1\n"),
    ("user_id", "usér"),
    ("user_id", "u" * 64),
    ("user_id", "u" * 65),
    ("user_id", "a:b.c-d_e"),
    ("country", "DE\n"),
    ("merchant_category", "5411\n"),
    ("merchant_category", "٥٤١١"),
]


def _service_accepts(txn: Transaction) -> bool:
    try:
        ScoreItem.model_validate(scoring_request(txn, FEATURES))
    except PydanticValidationError:
        return False
    return True


def _intake_accepts(txn: Transaction) -> bool:
    try:
        validate(txn.to_record())
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("field", "value"), CASES, ids=[f"{f}={v!r}" for f, v in CASES])
def test_intake_and_service_accept_the_same_values(field: str, value: Any) -> None:
    txn = replace(TXN, **{field: value})
    assert _intake_accepts(txn) == _service_accepts(txn)


def test_the_baseline_event_passes_both() -> None:
    assert _intake_accepts(TXN) and _service_accepts(TXN)


def test_the_client_reads_which_items_the_service_refused_from_its_own_422() -> None:
    """The service's 422 body (as the route writes it) names the refused items in a form the
    client parses: only those go to the fallback."""
    good = scoring_request(TXN, FEATURES)
    bad = scoring_request(TXN, FEATURES | {"amount_eur": 1e13})
    body = orjson.dumps({"items": [good, bad, good, {**good, "channel": "SATELLITE"}]})
    with pytest.raises(PydanticValidationError) as info:
        BatchRequest.model_validate_json(body)
    answer = _invalid(info.value)
    assert answer.status == 422
    refused = refused_items(answer.body, 4)
    assert sorted(refused) == [1, 3]
    assert refused[1].startswith("features.amount_eur") and refused[3].startswith("channel")
