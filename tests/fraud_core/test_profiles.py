"""A stored profile is parsed strictly: any malformed value reads as "no profile", logged with its
key, and never raises (it used to halt the job and the action consumer)."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from fraud_core.enrichment import MAX_PROFILE_BYTES, parse_profile, read_profile
from fraud_core.exceptions import InvalidProfile
from fraud_core.feature_catalog import DAY_MS, FEATURE_NAMES
from fraud_core.features import Profile, build_features
from fraud_core.transaction import Transaction

GOOD = Profile(
    avg_amount=12.5,
    home_country="DE",
    account_created_ms=1,
    risk_tier=1,
    devices=("d",),
    txn_count=3,
    enrolled=False,
    seen_avg_amount=40.0,
    seen_devices=("e",),
    tier_raises=2,
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
    ("enrolled string", b'{"enrolled": "yes"}', "enrolled"),
    ("enrolled number", b'{"enrolled": 1}', "enrolled"),
    ("seen_avg_amount negative", b'{"seen_avg_amount": -3}', "seen_avg_amount"),
    ("seen_devices string", b'{"seen_devices": "d"}', "seen_devices"),
    ("tier_raises out of range", b'{"tier_raises": 9}', "tier_raises"),
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


def test_only_enrolment_is_a_model_input() -> None:
    """What the consumers learn never reaches the features (a training replay, which starts from the
    same seed, could not reproduce it); a profile they started reads as no profile at all."""
    txn = Transaction(
        event_id="e-1",
        user_id="u-1",
        card_id="c-1",
        merchant_id="m-1",
        merchant_category="5411",
        amount_minor=9_900,
        currency="EUR",
        country="FR",
        channel="POS",
        device_id="dev_new",
        event_time=40 * DAY_MS,
    )
    enrolled = Profile(
        avg_amount=33.0, home_country="DE", account_created_ms=DAY_MS, risk_tier=1, devices=("d",)
    )
    learnt = dataclasses.replace(
        enrolled,
        txn_count=90,
        seen_avg_amount=99.0,
        seen_devices=("dev_new",),
        countries=("FR",),
        tier_raises=2,
    )
    stream = dict.fromkeys(FEATURE_NAMES, 0.0)
    assert build_features(txn, stream, learnt) == build_features(txn, stream, enrolled)
    features = build_features(txn, stream, enrolled)
    assert (features["profile_avg_amount"], features["risk_tier"], features["known_device"]) == (
        33.0,
        1.0,
        0.0,
    )
    assert features["is_foreign"] == 1.0 and features["account_age_days"] == 39.0
    started = dataclasses.replace(learnt, enrolled=False)
    assert build_features(txn, stream, started) == build_features(txn, stream, None)
    assert build_features(txn, stream, None)["profile_missing"] == 1.0
