"""The documented rule-based fallback score, used when the model cannot be reached.

Each rule adds a weight when it fires; the score is the sum clipped to [0, 1] and compared with
:data:`FALLBACK_THRESHOLD`. Decisions taken this way carry ``degraded=true`` and
``model_version = FALLBACK_VERSION``. The rules mirror the simulator's fraud signatures:

=============================================  ======  ======================================
rule                                           weight  catches
=============================================  ======  ======================================
5 or more payments within one minute           0.45    card testing
4 or more merchants within one hour and >= 5    0.25    card testing, merchant bursts
  payments in ten minutes
unknown device and foreign country             0.40    account takeover
amount more than 5x the customer's average     0.30    account takeover
2 or more countries within one hour            0.40    impossible travel
high-risk merchant and >= 3 payments in 10 min  0.30    high-risk merchant bursts
=============================================  ======  ======================================
"""

from __future__ import annotations

from collections.abc import Mapping

from fraud_core.features import REASON_TEXT

FALLBACK_VERSION = "fallback-rules-v1"
FALLBACK_THRESHOLD = 0.5

_RULES: tuple[tuple[str, float, str], ...] = (
    ("card_testing", 0.45, "txn_count_1m"),
    ("many_merchants", 0.25, "distinct_merchants_1h"),
    ("takeover", 0.40, "known_device"),
    ("amount_spike", 0.30, "amount_to_avg_ratio"),
    ("travel", 0.40, "distinct_countries_1h"),
    ("risky_merchant_burst", 0.30, "mcc_risk"),
)


def _fires(rule: str, f: Mapping[str, float]) -> bool:
    if rule == "card_testing":
        return f["txn_count_1m"] >= 5
    if rule == "many_merchants":
        return f["distinct_merchants_1h"] >= 4 and f["txn_count_10m"] >= 5
    if rule == "takeover":
        return f["known_device"] == 0.0 and f["is_foreign"] == 1.0
    if rule == "amount_spike":
        return f["profile_missing"] == 0.0 and f["amount_to_avg_ratio"] > 5
    if rule == "travel":
        return f["distinct_countries_1h"] >= 2
    return f["mcc_risk"] >= 2 and f["txn_count_10m"] >= 3


def fallback_score(features: Mapping[str, float]) -> tuple[float, list[str]]:
    """Score ``features`` by the rules above; returns the score and the reasons of the rules that fired."""
    score = 0.0
    reasons: list[str] = []
    for rule, weight, feature in _RULES:
        if _fires(rule, features):
            score += weight
            reasons.append(REASON_TEXT[feature])
    return min(score, 1.0), reasons
