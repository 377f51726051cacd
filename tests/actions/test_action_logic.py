"""Unit tests of the pure action logic (no processes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fraud_core.action_logic import (
    MAX_REMEMBERED,
    MAX_RISK_TIER,
    ActionType,
    audit_records,
    block_reason,
    notification,
    parse_decision,
    plan_actions,
    updated_profile,
)
from fraud_core.cards import mask_card
from fraud_core.exceptions import ValidationError
from fraud_core.features import Profile

T0 = 1_700_000_000_000


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "0b7d9c1e-7a5c-4f0e-9d59-2f1f0e6a0a11",
        "user_id": "user_1",
        "decision": "APPROVED",
        "score": 0.1,
        "threshold": 0.5,
        "model_version": "m1",
        "reasons": [],
        "degraded": False,
        "features": {},
        "event_time": T0,
        "decided_at": T0 + 5,
        "card_id": "card_abcdef1234",
        "amount_minor": 2000,
        "currency": "EUR",
        "merchant_id": "m1",
        "country": "DE",
        "device_id": "dev_1",
    }
    return base | overrides


def test_parse_accepts_fastavro_datetimes() -> None:
    d = parse_decision(record(event_time=datetime.fromtimestamp(T0 / 1000, tz=UTC)))
    assert d.event_time == T0
    assert not d.flagged


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"user_id": "has space"}, "user_id"),
        ({"decision": "MAYBE"}, "decision"),
        ({"decision": "FLAGGED", "card_id": ""}, "card_id"),
        ({"amount_minor": -1}, "amount_minor"),
        ({"currency": "XXX"}, "currency"),
        ({"country": "germany"}, "country"),
        ({"event_time": 0}, "event_time"),
        ({"device_id": "bad device"}, "device_id"),
    ],
)
def test_parse_names_the_invalid_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_decision(record(**overrides))
    assert info.value.field == field
    assert info.value.error_type == "VALIDATION"


def test_review_only_notifies_and_leaves_card_and_profile_alone() -> None:
    review = parse_decision(record(decision="FLAGGED", action="REVIEW", rules_fired=["card_testing_probe"]))
    assert review.flagged and not review.blocks
    assert plan_actions(review) == [ActionType.NOTIFY]
    profile = Profile(avg_amount=30.0, risk_tier=1, txn_count=4)
    assert updated_profile(profile, review) == profile


def test_block_records_why_the_card_was_blocked() -> None:
    by_rule = parse_decision(record(decision="FLAGGED", action="BLOCK", rules_fired=["card_testing_burst"]))
    assert by_rule.blocks and block_reason(by_rule) == "rules card_testing_burst"
    by_score = parse_decision(record(decision="FLAGGED", action="BLOCK", score=0.97))
    assert block_reason(by_score) == "model score 0.970 at or above the block threshold"


def test_decisions_written_before_actions_existed_never_block() -> None:
    legacy = parse_decision(record(decision="FLAGGED"))  # no "action" field: an older writer
    assert legacy.action == "REVIEW" and ActionType.BLOCK_CARD not in plan_actions(legacy)
    # The same record read through the current schema gets the field's default, APPROVE.
    assert parse_decision(record(decision="FLAGGED", action="APPROVE")).action == "REVIEW"
    assert parse_decision(record()).action == "APPROVE"


@pytest.mark.parametrize(
    ("decision", "action"), [("APPROVED", "REVIEW"), ("APPROVED", "BLOCK"), ("FLAGGED", "X")]
)
def test_action_contradicting_the_decision_is_refused(decision: str, action: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_decision(record(decision=decision, action=action))
    assert info.value.field == "action"


def test_flagged_with_unknown_currency_is_still_actionable() -> None:
    # Blocking needs no amount; only learning from an approval does.
    assert parse_decision(record(decision="FLAGGED", currency="")).flagged


def test_plan_actions() -> None:
    flagged = parse_decision(record(decision="FLAGGED", action="BLOCK"))
    assert plan_actions(flagged) == [ActionType.BLOCK_CARD, ActionType.RAISE_RISK_TIER, ActionType.NOTIFY]
    assert plan_actions(parse_decision(record())) == [ActionType.UPDATE_PROFILE]


def test_flagged_raises_risk_tier_up_to_the_cap_and_learns_nothing_else() -> None:
    flagged = parse_decision(record(decision="FLAGGED", action="BLOCK"))
    profile = Profile(avg_amount=10.0, home_country="FR", risk_tier=1, txn_count=3, devices=("d",))
    raised = updated_profile(profile, flagged)
    assert (raised.tier_raises, raised.effective_tier) == (1, 2)
    # Enrolment, the model's input, is never rewritten by the pipeline's own decisions.
    assert (raised.risk_tier, raised.avg_amount, raised.devices) == (1, 10.0, ("d",))
    assert (raised.txn_count, raised.seen_avg_amount, raised.seen_devices) == (3, 0.0, ())
    capped = Profile(risk_tier=MAX_RISK_TIER - 1)
    for _ in range(3):
        capped = updated_profile(capped, flagged)
    assert capped.effective_tier == MAX_RISK_TIER and capped.tier_raises == 1


def test_flagged_without_profile_starts_one_at_tier_one_that_is_not_enrolment() -> None:
    raised = updated_profile(None, parse_decision(record(decision="FLAGGED", action="BLOCK")))
    assert (raised.effective_tier, raised.home_country, raised.account_created_ms) == (1, "DE", T0)
    assert raised.enrolled is False


def test_approved_updates_running_average_in_eur_and_count() -> None:
    profile = Profile(avg_amount=10.0, home_country="DE", txn_count=3)
    usd = parse_decision(record(amount_minor=10_000, currency="USD"))  # 100 USD = 92 EUR
    after = updated_profile(profile, usd)
    assert after.txn_count == 4
    assert after.seen_avg_amount == pytest.approx((10.0 * 3 + 92.0) / 4)
    assert after.avg_amount == 10.0
    again = updated_profile(after, usd)
    assert again.seen_avg_amount == pytest.approx((after.seen_avg_amount * 4 + 92.0) / 5)


def test_approved_for_a_new_user_starts_a_profile() -> None:
    after = updated_profile(None, parse_decision(record(country="FR", device_id="dev_9")))
    assert after == Profile(
        home_country="FR",
        account_created_ms=T0,
        countries=("FR",),
        txn_count=1,
        enrolled=False,
        seen_avg_amount=20.0,
        seen_devices=("dev_9",),
    )


def test_seeded_average_without_count_is_weighed_as_one_payment() -> None:
    after = updated_profile(Profile(avg_amount=40.0), parse_decision(record(amount_minor=2000)))
    assert after.seen_avg_amount == pytest.approx(30.0)


def test_devices_and_countries_are_bounded_most_recent_last() -> None:
    many = tuple(f"dev_{i}" for i in range(MAX_REMEMBERED))
    profile = Profile(seen_devices=many, countries=("DE", "FR"), txn_count=1, avg_amount=1.0)
    after = updated_profile(profile, parse_decision(record(device_id="dev_new", country="DE")))
    assert len(after.seen_devices) == MAX_REMEMBERED
    assert after.seen_devices[-1] == "dev_new" and "dev_0" not in after.seen_devices
    assert after.countries == ("FR", "DE")  # known country moved to the end, not duplicated
    again = updated_profile(after, parse_decision(record(device_id=None, country="")))
    assert again.seen_devices == after.seen_devices and again.countries == after.countries


def test_audit_records_have_deterministic_ids_and_masked_details() -> None:
    flagged = parse_decision(record(decision="FLAGGED", action="BLOCK", reasons=["unusually large amount"]))
    before = Profile(risk_tier=0)
    records = audit_records(flagged, before, updated_profile(before, flagged), T0 + 9, 3600, "log")
    assert [r["action_id"] for r in records] == [
        f"{flagged.event_id}:BLOCK_CARD",
        f"{flagged.event_id}:RAISE_RISK_TIER",
        f"{flagged.event_id}:NOTIFY",
    ]
    assert all(r["acted_at"] == T0 + 9 and r["card_id"] == flagged.card_id for r in records)
    assert "risk tier 0 -> 1" in records[1]["detail"]
    assert all(flagged.card_id not in r["detail"] for r in records)


def test_profile_update_audit_can_be_switched_off() -> None:
    approved = parse_decision(record())
    after = updated_profile(None, approved)
    assert [r["action"] for r in audit_records(approved, None, after, T0, 1, "log")] == ["UPDATE_PROFILE"]
    assert audit_records(approved, None, after, T0, 1, "log", audit_profile_updates=False) == []


def test_mask_card_and_notification_never_carry_the_full_card() -> None:
    assert mask_card("card_abcdef1234") == "****1234"
    assert mask_card("1234") == "****"
    body = notification(parse_decision(record(decision="FLAGGED", action="BLOCK")), "cid-1")
    assert body["card"] == "****1234" and "card_abcdef1234" not in str(body)
    assert body["correlation_id"] == "cid-1"
