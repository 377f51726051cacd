"""The user's velocity, the payment's own features and the profile's, and the assembly of the
model's input row; imported by the trainer, the stream job, the baselines and the backtest. Each
feature is declared once in :mod:`fraud_core.feature_catalog`; the states of the other entities
(days, merchant, card, labels) are in :mod:`fraud_core.entities`.

Velocity semantics (what makes replays reproduce live results): for an event at event time ``t``,
a window of ``W`` covers the user's events *already seen in arrival order* whose event time lies
in ``(t - W, t]``, the event itself included. The result therefore depends only on the order of
events within the user's Kafka partition, never on wall-clock time or on when a window closes.
History older than the longest window plus the allowed lateness (relative to the newest event
time seen) is pruned, so state per user is bounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fraud_core.exceptions import InvalidProfile
from fraud_core.feature_catalog import (
    DAY_MS,
    FEATURE_NAMES,
    MAX_RISK_TIER,
    MINUTE_MS,
    SECONDS_SINCE_PREV_CAP,
    names_of,
)
from fraud_core.reference import CHANNELS, mcc_risk, to_eur
from fraud_core.transaction import Transaction

WINDOWS_MS: dict[str, int] = {"1m": MINUTE_MS, "10m": 10 * MINUTE_MS, "1h": 60 * MINUTE_MS}
HORIZON_MS = max(WINDOWS_MS.values())
ALLOWED_LATENESS_MS = 5 * MINUTE_MS
# A user's velocity history is capped (oldest arrivals dropped first), so keyed state stays bounded
# whatever the input: more payments than this within the horizon saturate the velocity counts, far
# above anything the rules let through (card testing is blocked within a few dozen attempts).
MAX_HISTORY_ENTRIES = 10_000
VELOCITY_FEATURES: tuple[str, ...] = names_of("user_velocity")
BLOCKLIST_REASON = "card is on the blocklist"


@dataclass(frozen=True, slots=True)
class Profile:
    """What Redis knows about a user (key ``profile:<user_id>``, JSON).

    Two parts, and only the first is a model input:

    - **Enrolment** (``avg_amount``, ``home_country``, ``account_created_ms``, ``risk_tier``,
      ``devices``): what onboarding knows about the customer, written by whoever seeds the store
      (the bootstrap, a CRM sync). The consumers never change it, so the features read from it at
      scoring time are the ones a training replay computes from the same seed: no feedback from the
      pipeline's own decisions, which no replay could reproduce (they depend on the model, the
      timing of the consumers and the order of their writes).
    - **What the consumers learn** (``txn_count``, ``seen_avg_amount``, ``seen_devices``,
      ``countries``, ``tier_raises``): for the analysts and the audit trail. The user's behaviour
      reaches the model through the stream's own windows of days instead, which replay exactly.

    ``enrolled`` is false for a profile the consumers started for a user onboarding never stored:
    the features treat it as missing, as a replay without that user's profile does.
    """

    avg_amount: float = 0.0
    home_country: str = ""
    account_created_ms: int = 0
    risk_tier: int = 0
    devices: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    txn_count: int = 0
    enrolled: bool = True
    seen_avg_amount: float = 0.0
    seen_devices: tuple[str, ...] = ()
    tier_raises: int = 0

    @property
    def effective_tier(self) -> int:
        """The tier analysts see: enrolment's plus one per block, capped at :data:`MAX_RISK_TIER`."""
        return min(self.risk_tier + self.tier_raises, MAX_RISK_TIER)

    @classmethod
    def from_mapping(cls, data: object) -> Profile:
        """Build a profile from its JSON form, tolerating missing fields (older writers).

        Raises:
            InvalidProfile: ``data`` is not an object, or a field has the wrong type, is not finite,
                is out of range or too long.
        """
        if not isinstance(data, Mapping):
            raise InvalidProfile("<profile>", data, "must be a JSON object")
        return cls(
            avg_amount=_number(data, "avg_amount"),
            home_country=_text(data, "home_country"),
            account_created_ms=_integer(data, "account_created_ms"),
            risk_tier=_integer(data, "risk_tier", MAX_RISK_TIER),
            devices=_texts(data, "devices"),
            countries=_texts(data, "countries"),
            txn_count=_integer(data, "txn_count"),
            enrolled=_flag(data, "enrolled"),
            seen_avg_amount=_number(data, "seen_avg_amount"),
            seen_devices=_texts(data, "seen_devices"),
            tier_raises=_integer(data, "tier_raises", MAX_RISK_TIER),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The JSON form stored in Redis."""
        return {
            "avg_amount": self.avg_amount,
            "home_country": self.home_country,
            "account_created_ms": self.account_created_ms,
            "risk_tier": self.risk_tier,
            "devices": list(self.devices),
            "countries": list(self.countries),
            "txn_count": self.txn_count,
            "enrolled": self.enrolled,
            "seen_avg_amount": self.seen_avg_amount,
            "seen_devices": list(self.seen_devices),
            "tier_raises": self.tier_raises,
        }


# Bounds of a stored profile's fields: beyond them the profile is malformed, not merely unusual.
PROFILE_MAX_TEXT = 256
PROFILE_MAX_ITEMS = 1000
_MAX_LONG = 2**63 - 1


def _number(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidProfile(name, value, "must be a number")
    if not math.isfinite(value) or not 0 <= value <= _MAX_LONG:
        raise InvalidProfile(name, value, "must be a finite number >= 0")
    return float(value)


def _integer(data: Mapping[str, Any], name: str, maximum: int = _MAX_LONG) -> int:
    value = data.get(name, 0)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 from a writer that does not keep ints; 1e999 (inf) fails is_integer
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidProfile(name, value, "must be an integer")
    if not 0 <= value <= maximum:
        raise InvalidProfile(name, value, f"must be between 0 and {maximum}")
    return value


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, True)
    if not isinstance(value, bool):
        raise InvalidProfile(name, value, "must be true or false")
    return value


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise InvalidProfile(name, value, "must be a string")
    if len(value) > PROFILE_MAX_TEXT:
        raise InvalidProfile(name, value, f"longer than {PROFILE_MAX_TEXT} characters")
    return value


def _texts(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, ())
    if not isinstance(value, list | tuple):
        raise InvalidProfile(name, value, "must be a list of strings")
    if len(value) > PROFILE_MAX_ITEMS:
        raise InvalidProfile(name, value, f"more than {PROFILE_MAX_ITEMS} items")
    for item in value:
        if not isinstance(item, str) or len(item) > PROFILE_MAX_TEXT:
            raise InvalidProfile(
                name, item, f"items must be strings of at most {PROFILE_MAX_TEXT} characters"
            )
    return tuple(value)


# One remembered past event: (event_time_ms, amount_eur, merchant_id, country).
HistoryEntry = tuple[int, float, str, str]


@dataclass(slots=True)
class VelocityState:
    """A user's recent history; the only per-user state of the stream job (Flink keyed state)."""

    entries: list[HistoryEntry] = field(default_factory=list)
    max_event_time: int = 0

    def observe(self, txn: Transaction) -> dict[str, float]:
        """Return the velocity features of ``txn`` and remember it. Deterministic in arrival order.

        History older than the horizon (plus the allowed lateness) is pruned relative to
        ``min(event_time, the latest event time seen before it)``: an event far ahead of the
        others (a wrong clock; the job's bound lets one day through) neither wipes the history at
        once nor, once it sits in the history, stops the pruning of what comes after it. A user's
        history also never exceeds :data:`MAX_HISTORY_ENTRIES`.
        """
        t = txn.event_time
        amount = to_eur(txn.amount_minor, txn.currency)
        reference = min(t, self.max_event_time) if self.entries else t
        self.entries.append((t, amount, txn.merchant_id, txn.country))
        self.max_event_time = max(self.max_event_time, t)
        features = velocity_features(self.entries, t)
        cutoff = reference - HORIZON_MS - ALLOWED_LATENESS_MS
        # Entries are in arrival order. In order, the first is the oldest: one comparison decides.
        # When the first is ahead of the reference (it came early), every entry is checked.
        first = self.entries[0][0]
        if first <= cutoff or (first > reference and any(e[0] <= cutoff for e in self.entries)):
            self.entries = [e for e in self.entries if e[0] > cutoff]
        if len(self.entries) > MAX_HISTORY_ENTRIES:
            del self.entries[: len(self.entries) - MAX_HISTORY_ENTRIES]
        return features

    def to_state(self) -> tuple[int, list[HistoryEntry]]:
        """Compact, picklable form for Flink keyed state."""
        return self.max_event_time, self.entries

    @classmethod
    def from_state(cls, state: tuple[int, list[HistoryEntry]] | None) -> VelocityState:
        if state is None:
            return cls()
        max_event_time, entries = state
        return cls(entries=list(entries), max_event_time=max_event_time)


# (window, count feature, sum feature), named once: per event on the hot path.
_VELOCITY_WINDOWS = tuple(
    (width, f"txn_count_{label}", f"amount_sum_{label}") for label, width in WINDOWS_MS.items()
)


def velocity_features(entries: Sequence[HistoryEntry], t: int) -> dict[str, float]:
    """Velocity features at event time ``t`` over ``entries`` (which include the event itself last)."""
    out: dict[str, float] = {}
    for width, count_name, sum_name in _VELOCITY_WINDOWS:
        lo = t - width
        count = 0
        total = 0.0
        for et, amount, _m, _c in entries:
            if lo < et <= t:
                count += 1
                total += amount
        out[count_name] = float(count)
        out[sum_name] = round(total, 2)
    lo = t - HORIZON_MS
    in_hour = [e for e in entries if lo < e[0] <= t]
    out["distinct_merchants_1h"] = float(len({e[2] for e in in_hour}))
    out["distinct_countries_1h"] = float(len({e[3] for e in in_hour}))
    previous = [e[0] for e in entries[:-1] if e[0] <= t]
    gap = (t - max(previous)) / 1000 if previous else SECONDS_SINCE_PREV_CAP
    out["seconds_since_prev"] = min(gap, SECONDS_SINCE_PREV_CAP)
    return out


def transaction_features(txn: Transaction, profile: Profile | None) -> dict[str, float]:
    """Features of the payment itself (``is_foreign`` needs the enrolled profile's home country)."""
    home = profile.home_country if profile is not None and profile.enrolled else ""
    return {
        "amount_eur": to_eur(txn.amount_minor, txn.currency),
        "mcc_risk": float(mcc_risk(txn.merchant_category)),
        "channel_code": float(CHANNELS.index(txn.channel)),
        "hour_of_day": float((txn.event_time // 3_600_000) % 24),
        "is_foreign": float(bool(home) and txn.country != home),
    }


def profile_features(txn: Transaction, profile: Profile | None) -> dict[str, float]:
    """Features from the user's enrolment (enrichment); neutral defaults when there is none.

    Only the enrolment part of :class:`Profile` is read: what the consumers learn is not an input.
    """
    amount = to_eur(txn.amount_minor, txn.currency)
    if profile is None or not profile.enrolled:
        return {
            "profile_avg_amount": 0.0,
            "amount_to_avg_ratio": 1.0,
            "account_age_days": 0.0,
            "risk_tier": 0.0,
            "known_device": 1.0,
            "profile_missing": 1.0,
        }
    age_ms = max(0, txn.event_time - profile.account_created_ms) if profile.account_created_ms else 0
    return {
        "profile_avg_amount": round(profile.avg_amount, 2),
        "amount_to_avg_ratio": round(amount / max(profile.avg_amount, 1.0), 4),
        "account_age_days": float(age_ms // DAY_MS),
        "risk_tier": float(profile.risk_tier),
        "known_device": float(txn.device_id is None or txn.device_id in profile.devices),
        "profile_missing": 0.0,
    }


def build_features(
    txn: Transaction, stream: Mapping[str, float], profile: Profile | None
) -> dict[str, float]:
    """Every model feature of one event, keyed by name, in :data:`FEATURE_NAMES` order.

    ``stream`` holds the features of the stream's keyed state (user, merchant, card: from
    :class:`fraud_core.entities.StreamFeatures` or the job's three keyed operators).
    """
    merged = {**stream, **transaction_features(txn, profile), **profile_features(txn, profile)}
    return {name: merged[name] for name in FEATURE_NAMES}


def to_row(features: Mapping[str, float], names: Iterable[str] = FEATURE_NAMES) -> list[float]:
    """The model's input row: feature values in the order the model was trained on."""
    return [float(features[n]) for n in names]
