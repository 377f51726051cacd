"""From a score to the decision record every output topic carries (the ``decision`` schema).

Shared by the stream job, the naive baseline and the backtest so all three decide identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fraud_core.features import BLOCKLIST_REASON
from fraud_core.topics import APPROVED, FLAGGED
from fraud_core.transaction import Transaction

FLAG = "FLAGGED"
APPROVE = "APPROVED"


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """What scored one event: the model (via the service) or the fallback rules (``degraded``)."""

    score: float
    threshold: float
    model_version: str
    reasons: list[str] = field(default_factory=list)
    degraded: bool = False
    shadow_score: float | None = None
    shadow_model_version: str | None = None


def decide(
    txn: Transaction,
    features: Mapping[str, float],
    result: ScoreResult,
    blocklisted: bool,
    enrichment_degraded: bool,
    decided_at_ms: int,
) -> dict[str, Any]:
    """The decision record. A blocklisted card is always FLAGGED, with the blocklist as first reason."""
    flagged = blocklisted or result.score >= result.threshold
    reasons = [BLOCKLIST_REASON, *result.reasons] if blocklisted else list(result.reasons)
    return {
        "event_id": txn.event_id,
        "user_id": txn.user_id,
        "decision": FLAG if flagged else APPROVE,
        "score": float(result.score),
        "threshold": float(result.threshold),
        "model_version": result.model_version,
        "reasons": reasons,
        "degraded": result.degraded or enrichment_degraded,
        "features": dict(features),
        "event_time": txn.event_time,
        "decided_at": decided_at_ms,
        "card_id": txn.card_id,
        "amount_minor": txn.amount_minor,
        "currency": txn.currency,
        "merchant_id": txn.merchant_id,
        "country": txn.country,
        "device_id": txn.device_id,
        "shadow_score": result.shadow_score,
        "shadow_model_version": result.shadow_model_version,
    }


def topic_for(record: Mapping[str, Any], flagged_topic: str = FLAGGED, approved_topic: str = APPROVED) -> str:
    """The output topic of a decision record."""
    return flagged_topic if record["decision"] == FLAG else approved_topic


def scoring_request(txn: Transaction, features: Mapping[str, float]) -> dict[str, Any]:
    """One item of the scoring service's request body (``POST /v1/score`` and ``/v1/score/batch``)."""
    return {
        "event_id": txn.event_id,
        "user_id": txn.user_id,
        "amount_minor": txn.amount_minor,
        "currency": txn.currency,
        "merchant_category": txn.merchant_category,
        "country": txn.country,
        "channel": txn.channel,
        "event_time": txn.event_time,
        "features": dict(features),
    }


def result_from_response(item: Mapping[str, Any]) -> ScoreResult:
    """A :class:`ScoreResult` from one result object of the scoring service's response."""
    shadow = item.get("shadow") or {}
    return ScoreResult(
        score=float(item["score"]),
        threshold=float(item["threshold"]),
        model_version=str(item["model_version"]),
        reasons=list(item.get("reasons", [])),
        degraded=False,
        shadow_score=shadow.get("score"),
        shadow_model_version=shadow.get("model_version"),
    )
