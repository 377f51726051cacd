"""Every model feature, declared once: name, the entity whose state computes it, its window, its
ablation group, how it reads to an analyst, and its valid bounds.

Everything else is derived from :data:`FEATURES`: the model's column order (``FEATURE_NAMES``), the
scoring service's request bounds, the reason codes, the console's wording and the model card's
ablation groups. Adding a feature means one :class:`Feature` here plus its computation in
:mod:`fraud_core.features` or :mod:`fraud_core.entities`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from fraud_core.reference import CHANNELS

Entity = Literal["user", "merchant", "card", "payment", "profile"]
Group = Literal["user_velocity", "days", "merchant", "card", "labels", "payment", "profile"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# Seconds since the user's previous payment saturate at the longest user window (1 h): also the
# value when there is no previous payment.
SECONDS_SINCE_PREV_CAP = 3600.0
# How many risk tiers a profile may carry (0 none .. 3 highest; the consumers never write more).
MAX_RISK_TIER = 3
_BIG = 1e12  # sums and ratios of amounts: generous, but finite and far from float overflow
_COUNT = 1e6


@dataclass(frozen=True, slots=True)
class Feature:
    """One model input.

    ``reason`` is the phrase a reason code uses when the feature pushes the score up; ``words`` and
    ``fmt`` are how the console shows its value; ``low``/``high`` are inclusive bounds beyond which
    a value is a broken upstream computation (the scoring service answers 422).
    """

    name: str
    entity: Entity
    group: Group
    window: str | None
    reason: str
    words: str
    fmt: str = "{:.0f}"
    low: float = 0.0
    high: float = _COUNT


def _user_velocity() -> Iterator[Feature]:
    spans = (("1m", "one minute", "minute"), ("10m", "ten minutes", "10 minutes"), ("1h", "one hour", "hour"))
    for window, spoken, last in spans:
        yield Feature(
            f"txn_count_{window}",
            "user",
            "user_velocity",
            window,
            f"many payments within {spoken}",
            f"payments by this user in the last {last}",
        )
        yield Feature(
            f"amount_sum_{window}",
            "user",
            "user_velocity",
            window,
            f"high amount spent within {spoken}",
            f"EUR spent by this user in the last {last}",
            "{:.2f}",
            high=_BIG,
        )
    yield Feature(
        "distinct_merchants_1h",
        "user",
        "user_velocity",
        "1h",
        "many different merchants within one hour",
        "different merchants in the last hour",
    )
    yield Feature(
        "distinct_countries_1h",
        "user",
        "user_velocity",
        "1h",
        "payments from several countries within one hour",
        "different countries in the last hour",
    )
    yield Feature(
        "seconds_since_prev",
        "user",
        "user_velocity",
        "1h",
        "unusual time since the previous payment",
        "seconds since the user's previous payment",
        high=SECONDS_SINCE_PREV_CAP,
    )


def _user_days() -> Iterator[Feature]:
    for window, spoken in (("1d", "day"), ("7d", "7 days"), ("30d", "30 days")):
        yield Feature(
            f"user_count_{window}",
            "user",
            "days",
            window,
            f"unusual number of payments over the last {spoken}",
            f"earlier payments by this user over the last {spoken}",
        )
        yield Feature(
            f"user_sum_{window}",
            "user",
            "days",
            window,
            f"unusual spending over the last {spoken}",
            f"EUR spent by this user over the last {spoken}",
            "{:.2f}",
            high=_BIG,
        )
        yield Feature(
            f"user_mean_{window}",
            "user",
            "days",
            window,
            f"unusual average payment over the last {spoken}",
            f"this user's average payment over the last {spoken}, EUR",
            "{:.2f}",
            high=_BIG,
        )
    yield Feature(
        "amount_to_mean_30d",
        "user",
        "days",
        "30d",
        "amount far above the customer's 30-day average",
        "this amount as a multiple of the user's 30-day average",
        "{:.1f}x",
        high=_BIG,
    )


def _merchant() -> Iterator[Feature]:
    for window, spoken in (("1m", "minute"), ("10m", "10 minutes"), ("1h", "hour")):
        yield Feature(
            f"merchant_count_{window}",
            "merchant",
            "merchant",
            window,
            f"many payments at this merchant within the last {spoken}",
            f"payments at this merchant in the last {spoken}",
        )
        yield Feature(
            f"merchant_cards_{window}",
            "merchant",
            "merchant",
            window,
            f"many different cards at this merchant within the last {spoken}",
            f"different cards at this merchant in the last {spoken}",
        )
    yield Feature(
        "merchant_amount_ratio",
        "merchant",
        "merchant",
        "30d",
        "amount far above the merchant's typical payment",
        "this amount as a multiple of the merchant's 30-day average",
        "{:.1f}x",
        high=_BIG,
    )


def _card() -> Iterator[Feature]:
    yield Feature(
        "card_merchants_10m",
        "card",
        "card",
        "10m",
        "card used at many merchants within minutes",
        "different merchants this card paid in the last 10 minutes",
    )
    yield Feature(
        "card_countries_10m",
        "card",
        "card",
        "10m",
        "card used in several countries within minutes",
        "different countries this card paid in within the last 10 minutes",
    )
    yield Feature(
        "card_level_vs_usual",
        "card",
        "card",
        "30d",
        "amount far above what this card usually spends at such merchants",
        "this payment's amount-to-merchant-typical ratio as a multiple of the card's usual one (30 days)",
        "{:.1f}x",
        high=_BIG,
    )
    yield Feature(
        "card_high_levels_7d",
        "card",
        "card",
        "7d",
        "card spending far above its usual level for days",
        "payments of this card in the last 7 days at 3x its usual level or more",
    )


def _labels() -> Iterator[Feature]:
    entities: tuple[Entity, ...] = ("merchant", "card")
    for entity in entities:
        for window, spoken in (("1d", "day"), ("7d", "7 days"), ("30d", "30 days")):
            yield Feature(
                f"{entity}_fraud_rate_{window}",
                entity,
                "labels",
                window,
                f"{entity} with confirmed fraud (over {spoken}, known with the label delay)",
                f"share of this {entity}'s payments confirmed as fraud over {spoken} (before the label delay)",
                "{:.3f}",
                high=1.0,
            )
        yield Feature(
            f"{entity}_recent_frauds_7d",
            entity,
            "labels",
            "7d",
            f"recent payments at this {entity} already reported as fraud",
            f"payments of this {entity} in the last 7 days confirmed as fraud a day ago or more",
        )


def _payment() -> Iterator[Feature]:
    yield Feature(
        "amount_eur",
        "payment",
        "payment",
        None,
        "unusually large amount",
        "amount in EUR",
        "{:.2f}",
        high=_BIG,
    )
    yield Feature(
        "mcc_risk",
        "payment",
        "payment",
        None,
        "high-risk merchant category",
        "merchant category risk (0 low, 1 medium, 2 high)",
        high=2,
    )
    yield Feature(
        "channel_code",
        "payment",
        "payment",
        None,
        "risky payment channel",
        "payment channel (" + ", ".join(f"{i} {c}" for i, c in enumerate(CHANNELS)) + ")",
        high=len(CHANNELS) - 1,
    )
    yield Feature(
        "hour_of_day", "payment", "payment", None, "unusual hour of day", "hour of day (UTC)", high=23
    )
    yield Feature(
        "is_foreign",
        "payment",
        "payment",
        None,
        "payment outside the home country",
        "paid outside the home country (1 yes)",
        high=1,
    )


def _profile() -> Iterator[Feature]:
    yield Feature(
        "profile_avg_amount",
        "profile",
        "profile",
        None,
        "spending profile of the customer",
        "the user's average payment, EUR",
        "{:.2f}",
        high=_BIG,
    )
    yield Feature(
        "amount_to_avg_ratio",
        "profile",
        "profile",
        None,
        "amount far above the customer's average",
        "this amount as a multiple of the user's average",
        "{:.1f}x",
        high=_BIG,
    )
    yield Feature("account_age_days", "profile", "profile", None, "young account", "account age in days")
    yield Feature(
        "risk_tier",
        "profile",
        "profile",
        None,
        "customer already in an elevated risk tier",
        f"the user's risk tier (0-{MAX_RISK_TIER})",
        high=MAX_RISK_TIER,
    )
    yield Feature(
        "known_device",
        "profile",
        "profile",
        None,
        "new, unknown device",
        "device seen before for this user (1 yes)",
        high=1,
    )
    yield Feature(
        "profile_missing",
        "profile",
        "profile",
        None,
        "no customer profile on file",
        "no profile for this user (1 yes)",
        high=1,
    )


FEATURES: tuple[Feature, ...] = (
    *_user_velocity(),
    *_user_days(),
    *_merchant(),
    *_card(),
    *_labels(),
    *_payment(),
    *_profile(),
)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
FEATURE_NAMES: tuple[str, ...] = tuple(BY_NAME)
REASON_TEXT: dict[str, str] = {f.name: f.reason for f in FEATURES}
FEATURE_BOUNDS: dict[str, tuple[float, float]] = {f.name: (f.low, f.high) for f in FEATURES}
FEATURE_WORDS: dict[str, tuple[str, str]] = {f.name: (f.words, f.fmt) for f in FEATURES}
# The groups the model card's ablation leaves out one at a time.
ABLATION_GROUPS: tuple[Group, ...] = ("user_velocity", "merchant", "card", "days", "labels")


def names_of(group: Group) -> tuple[str, ...]:
    """The features of one group, in model-column order."""
    return tuple(f.name for f in FEATURES if f.group == group)


def names_from(entity: Entity) -> tuple[str, ...]:
    """The features one entity's state computes, in model-column order."""
    return tuple(f.name for f in FEATURES if f.entity == entity)
