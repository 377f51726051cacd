"""The action logic as pure functions: what to do for a decision, and how a profile changes.

Nothing here touches Kafka, Redis or the clock; the consumer (:mod:`actions.consumer`) feeds
decoded decisions in and applies the results. Tests exercise all of it in-process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from fraud_core.cards import is_pan, mask_card
from fraud_core.decision import APPROVE, FLAG
from fraud_core.exceptions import CardNumberRefused, ValidationError
from fraud_core.feature_catalog import MAX_RISK_TIER
from fraud_core.features import BLOCKLIST_REASON, Profile
from fraud_core.reference import CURRENCIES, to_eur
from fraud_core.rules import APPROVE as ACTION_APPROVE
from fraud_core.rules import BLOCK, REVIEW

MAX_REMEMBERED = 20  # devices and countries kept per profile, most recent last
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class ActionType(StrEnum):
    """The symbols of ``ActionType`` in ``schemas/action.avsc``."""

    BLOCK_CARD = "BLOCK_CARD"
    NOTIFY = "NOTIFY"
    RAISE_RISK_TIER = "RAISE_RISK_TIER"
    UPDATE_PROFILE = "UPDATE_PROFILE"


@dataclass(frozen=True, slots=True)
class Decision:
    """The fields of a ``payments.flagged``/``payments.approved`` record the actions need."""

    event_id: str
    user_id: str
    decision: str
    score: float
    threshold: float
    model_version: str
    reasons: tuple[str, ...]
    event_time: int
    card_id: str = ""
    amount_minor: int = 0
    currency: str = ""
    country: str = ""
    device_id: str | None = None
    action: str = ACTION_APPROVE
    rules_fired: tuple[str, ...] = ()
    # Who decided a BLOCK when not the pipeline: an analyst's verdict or the review timeout policy.
    decided_by: str = ""

    @property
    def flagged(self) -> bool:
        return self.decision == FLAG

    @property
    def blocks(self) -> bool:
        """Only BLOCK puts the card on the blocklist; REVIEW asks a person, and blocks nothing."""
        return self.action == BLOCK


def action_of(record: Mapping[str, Any]) -> str:
    """The action of a decision record.

    Records written before ``action`` existed carry none, or (read through the current schema)
    its default APPROVE: a FLAGGED one then counts as REVIEW (it was never proven to deserve a
    block), an APPROVED one as APPROVE. ``decide`` never writes FLAGGED with APPROVE itself.

    Raises:
        ValidationError: the action is unknown, or REVIEW/BLOCK on an APPROVED decision.
    """
    decision = record.get("decision")
    action = record.get("action") or ACTION_APPROVE
    if action not in (ACTION_APPROVE, REVIEW, BLOCK):
        raise ValidationError("action", action, "must be APPROVE, REVIEW or BLOCK")
    if decision == FLAG:
        return REVIEW if action == ACTION_APPROVE else str(action)
    if action != ACTION_APPROVE:
        raise ValidationError("action", action, f"an APPROVED decision must carry APPROVE, not {action}")
    return ACTION_APPROVE


def millis(value: object) -> object:
    """Epoch milliseconds of a decoded timestamp-millis field (other values unchanged)."""
    # fastavro reads timestamp-millis as aware datetimes; tests and replays may pass ints.
    return (value - _EPOCH) // _MS if isinstance(value, datetime) else value


def parse_decision(record: Mapping[str, Any]) -> Decision:
    """Check a decoded decision record and keep what the actions need.

    Raises:
        ValidationError: naming the first field that makes the record impossible to act on.
    """
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise ValidationError("event_id", event_id, "must be a non-empty string (the idempotency key)")
    user_id = record.get("user_id")
    if not isinstance(user_id, str) or not _ID.match(user_id):
        raise ValidationError("user_id", user_id, "must be 1-64 characters of letters, digits, _ . : -")
    decision = record.get("decision")
    if decision not in (FLAG, APPROVE):
        raise ValidationError("decision", decision, f"must be {FLAG} or {APPROVE}")
    card_id = record.get("card_id") or ""
    if isinstance(card_id, str) and is_pan(card_id):
        raise CardNumberRefused("card_id", card_id)
    if decision == FLAG and not (isinstance(card_id, str) and _ID.match(card_id)):
        raise ValidationError(
            "card_id", mask_card(str(card_id)), "a flagged decision needs the card to block"
        )
    amount = record.get("amount_minor", 0)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise ValidationError("amount_minor", amount, "must be a non-negative integer of minor units")
    currency = record.get("currency") or ""
    if decision == APPROVE and currency not in CURRENCIES:
        raise ValidationError(
            "currency", currency, "unknown ISO 4217 currency: the average cannot be updated"
        )
    country = record.get("country") or ""
    if country and not (isinstance(country, str) and _COUNTRY.match(country)):
        raise ValidationError("country", country, "must be an ISO 3166-1 alpha-2 code in upper case")
    event_time = millis(record.get("event_time"))
    if not isinstance(event_time, int) or event_time <= 0:
        raise ValidationError("event_time", event_time, "must be a positive epoch-millisecond timestamp")
    device_id = record.get("device_id")
    if device_id is not None and not (isinstance(device_id, str) and _ID.match(device_id)):
        raise ValidationError("device_id", device_id, "must be 1-64 characters of letters, digits, _ . : -")
    for name in ("score", "threshold"):
        value = record.get(name, 0.0)
        # NaN or infinity would reach the audit records and the notification (and JSON has neither).
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ValidationError(name, value, "must be a number from 0 to 1")
    return Decision(
        event_id=event_id,
        user_id=user_id,
        decision=decision,
        score=float(record.get("score", 0.0)),
        threshold=float(record.get("threshold", 0.0)),
        model_version=str(record.get("model_version", "")),
        reasons=tuple(record.get("reasons") or ()),
        event_time=event_time,
        card_id=card_id,
        amount_minor=amount,
        currency=currency,
        country=country,
        device_id=device_id,
        action=action_of(record),
        rules_fired=tuple(record.get("rules_fired") or ()),
    )


def plan_actions(decision: Decision) -> list[ActionType]:
    """What to do for a decision, in the order it is done.

    BLOCK blocklists the card (with an expiry), raises the user's risk tier and notifies. REVIEW
    only notifies (step-up or an analyst decides): blocking the card or raising the tier on a
    mere suspicion would make every later payment of a genuine customer look worse, the
    false-positive cascade a review must not start (the store opens the REVIEW's case for the
    analysts and marks the card's review hold, which declines nothing). APPROVE teaches the profile (flagged payments
    are not learnt from: they may not be the user's).
    """
    if decision.blocks:
        return [ActionType.BLOCK_CARD, ActionType.RAISE_RISK_TIER, ActionType.NOTIFY]
    if decision.flagged:
        return [ActionType.NOTIFY]
    return [ActionType.UPDATE_PROFILE]


def block_reason(decision: Decision) -> str:
    """Why a card is blocked, as recorded with the blocklist entry: the rules that fired, else the
    score against the block threshold, or who decided when not the pipeline."""
    if decision.decided_by:
        return decision.decided_by
    if decision.reasons and decision.reasons[0] == BLOCKLIST_REASON:
        return "already on the blocklist"
    if decision.rules_fired:
        return "rules " + ", ".join(decision.rules_fired)
    return f"model score {decision.score:.3f} at or above the block threshold"


def blocklist_entry(decision: Decision, blocked_at_ms: int, ttl_s: int) -> dict[str, Any]:
    """The value stored under the card's blocklist key: who blocked it, why, and until when."""
    return {
        "event_id": decision.event_id,
        "reason": block_reason(decision),
        "reasons": list(decision.reasons),
        "model_version": decision.model_version,
        "score": decision.score,
        "blocked_at": blocked_at_ms,
        "expires_at": blocked_at_ms + ttl_s * 1000,
    }


def new_profile(decision: Decision) -> Profile:
    """The profile the consumers start for a user onboarding never stored: not enrolled (the
    features still treat the user as without a profile), first seen at this payment."""
    return Profile(home_country=decision.country, account_created_ms=decision.event_time, enrolled=False)


def _remember(items: Sequence[str], item: str | None) -> tuple[str, ...]:
    """``items`` with ``item`` moved (or added) to the end, keeping the last :data:`MAX_REMEMBERED`."""
    if not item:
        return tuple(items)
    kept = [i for i in items if i != item]
    kept.append(item)
    return tuple(kept[-MAX_REMEMBERED:])


def updated_profile(profile: Profile | None, decision: Decision) -> Profile:
    """The user's profile after acting on ``decision`` (a missing profile starts a new one).

    Only what the consumers learn changes, never the enrolment the model reads
    (:class:`fraud_core.features.Profile`). BLOCK: one more tier raise, the effective tier capped
    at :data:`MAX_RISK_TIER`. REVIEW: unchanged. Approved: the payment count, the running average
    amount in EUR (starting from enrolment's), and the devices and countries seen learn the payment.
    """
    current = profile if profile is not None else new_profile(decision)
    if decision.blocks:
        raises = min(current.tier_raises + 1, max(MAX_RISK_TIER - current.risk_tier, 0))
        return replace(current, tier_raises=raises)
    if decision.flagged:
        return current
    amount = to_eur(decision.amount_minor, decision.currency)
    count = current.txn_count + 1
    # Enrolment's average, weighed by the enrolled count, is where the learnt one starts.
    base = current.seen_avg_amount or current.avg_amount
    weight = current.txn_count or (1 if base else 0)
    average = (base * weight + amount) / (weight + 1)
    return replace(
        current,
        seen_avg_amount=round(average, 4),
        txn_count=count,
        seen_devices=_remember(current.seen_devices, decision.device_id),
        countries=_remember(current.countries, decision.country or None),
    )


def action_detail(
    action: ActionType,
    decision: Decision,
    before: Profile | None,
    after: Profile,
    block_ttl_s: int,
    channel: str,
) -> str:
    """The human-readable ``detail`` of one audit record (card ids masked)."""
    if action is ActionType.BLOCK_CARD:
        return f"card {mask_card(decision.card_id)} blocklisted for {block_ttl_s} s: {block_reason(decision)}"
    if action is ActionType.RAISE_RISK_TIER:
        old = before.effective_tier if before is not None else 0
        return f"risk tier {old} -> {after.effective_tier}" + (" (new profile)" * (before is None))
    if action is ActionType.NOTIFY:
        reasons = "; ".join(decision.reasons) or "no reason codes"
        score = f"score {decision.score:.3f}, threshold {decision.threshold:.3f}"
        return f"{decision.action} notified via {channel}: {score} ({reasons})"
    return (
        f"txn_count {after.txn_count}, avg {after.seen_avg_amount:.2f} EUR, "
        f"{len(after.seen_devices)} devices seen, {len(after.countries)} countries"
        + (" (new profile)" * (before is None))
    )


def audit_records(
    decision: Decision,
    before: Profile | None,
    after: Profile,
    acted_at_ms: int,
    block_ttl_s: int,
    notify_channel: str,
    audit_profile_updates: bool = True,
) -> list[dict[str, Any]]:
    """The ``payments.actions`` records of a decision, one per planned action.

    ``action_id`` is ``<event_id>:<action>``, so a record written twice (after a crash between the
    write and its acknowledgement) is recognisable downstream.
    """
    return [
        {
            "action_id": f"{decision.event_id}:{action.value}",
            "event_id": decision.event_id,
            "user_id": decision.user_id,
            "card_id": decision.card_id,
            "action": action.value,
            "detail": action_detail(action, decision, before, after, block_ttl_s, notify_channel),
            "acted_at": acted_at_ms,
        }
        for action in plan_actions(decision)
        if audit_profile_updates or action is not ActionType.UPDATE_PROFILE
    ]


def notification(decision: Decision, correlation_id: str) -> dict[str, Any]:
    """The JSON body of a notification about a flagged decision (card masked)."""
    return {
        "type": "payment_flagged",
        "action": decision.action,
        "event_id": decision.event_id,
        "user_id": decision.user_id,
        "card": mask_card(decision.card_id),
        "score": decision.score,
        "threshold": decision.threshold,
        "model_version": decision.model_version,
        "reasons": list(decision.reasons),
        "rules_fired": list(decision.rules_fired),
        "event_time": decision.event_time,
        "correlation_id": correlation_id or None,
    }
