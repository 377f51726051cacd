"""A stored profile is parsed strictly: any malformed value reads as "no profile", logged with its
key, and never raises (it used to halt the job and the action consumer)."""

from __future__ import annotations

import json
import logging

import pytest

from fraud_core.enrichment import MAX_PROFILE_BYTES, parse_profile, read_profile
from fraud_core.exceptions import InvalidProfile
from fraud_core.features import Profile

GOOD = Profile(
    avg_amount=12.5, home_country="DE", account_created_ms=1, risk_tier=1, devices=("d",), txn_count=3
)

BAD_VALUES: list[tuple[str, bytes | str, str]] = [
    ("list", b"[]", "<profile>"),
    ("null", b"null", "<profile>"),
    ("number", b"42", "<profile>"),
    ("string", b'"profile"', "<profile>"),
    ("txn_count 1e999", b'{"txn_count": 1e999}', "txn_count"),
    ("avg_amount Infinity", b'{"avg_amount": Infinity}', "avg_amount"),
    ("avg_amount NaN", b'{"avg_amount": NaN}', "avg_amount"),
    ("avg_amount negative", b'{"avg_amount": -1}', "avg_amount"),
    ("avg_amount string", b'{"avg_amount": "12"}', "avg_amount"),
    ("avg_amount bool", b'{"avg_amount": true}', "avg_amount"),
    ("txn_count fraction", b'{"txn_count": 1.5}', "txn_count"),
    ("txn_count too large", b'{"txn_count": 99999999999999999999999}', "txn_count"),
    ("account_created_ms negative", b'{"account_created_ms": -5}', "account_created_ms"),
    ("risk_tier object", b'{"risk_tier": {}}', "risk_tier"),
    ("risk_tier out of range", b'{"risk_tier": 1000}', "risk_tier"),
    ("home_country number", b'{"home_country": 49}', "home_country"),
    ("home_country huge", json.dumps({"home_country": "x" * 10_000}).encode(), "home_country"),
    ("devices string", b'{"devices": "dev_1"}', "devices"),
    ("devices with a number", b'{"devices": ["d", 7]}', "devices"),
    ("countries null", b'{"countries": null}', "countries"),
    ("countries too many", json.dumps({"countries": ["DE"] * 5000}).encode(), "countries"),
    ("bad JSON", b'{"avg_amount": ', "<profile>"),
    ("not UTF-8", b'{"home_country": "\xff\xfe"}', "<profile>"),
    ("deeply nested", b"[" * 50_000 + b"]" * 50_000, "<profile>"),
    ("huge value", b'{"home_country": "' + b"x" * MAX_PROFILE_BYTES + b'"}', "<profile>"),
]


@pytest.mark.parametrize(
    ("raw", "field"), [(r, f) for _, r, f in BAD_VALUES], ids=[n for n, _, _ in BAD_VALUES]
)
def test_a_malformed_profile_is_refused_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidProfile, match=f"profile field '{field}'"):
        read_profile(raw)


@pytest.mark.parametrize("raw", [r for _, r, _ in BAD_VALUES], ids=[n for n, _, _ in BAD_VALUES])
def test_a_malformed_profile_reads_as_none_with_a_log_line_naming_the_key(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fraud_core.enrichment"):
        assert parse_profile(raw, "profile:user_7") is None
    (line,) = caplog.messages
    assert "'profile:user_7'" in line and "malformed" in line
    assert len(line) < 400  # a huge value is not echoed in full


def test_a_valid_profile_round_trips_and_missing_fields_take_defaults() -> None:
    assert parse_profile(json.dumps(GOOD.to_mapping())) == GOOD
    assert parse_profile(b"{}") == Profile()
    assert parse_profile(b'{"txn_count": 3.0, "avg_amount": 5}') == Profile(avg_amount=5.0, txn_count=3)
    assert parse_profile(None) is None
