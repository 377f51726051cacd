"""From a score and the rules to the decision record every output topic carries (``decision`` schema).

:func:`decide` is the one place where the model, the rules and the blocklist combine into an
action; the stream job (:class:`fraud_core.scoring_step.ScoringStep`), the naive baseline and the
benchmark call it, and the backtest replays the job itself, so all of them decide identically.

The action is the most severe of three (APPROVE < REVIEW < BLOCK):

* the model's: BLOCK at ``score >= block_threshold``, REVIEW at ``score >= threshold``, else
  APPROVE (both thresholds come from the model card; a card without a block threshold never
  blocks on the score alone). A degraded result (no model) gives APPROVE;
* the rules': the most severe action of the rules that fired (:mod:`fraud_core.rules`: the
  ``always`` set, plus the ``fallback`` set when the model could not score);
* the blocklist's: BLOCK when the card is on it.

``decision`` is FLAGGED for REVIEW and BLOCK, APPROVED for APPROVE (docs/INTERFACES.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fraud_core.features import BLOCKLIST_REASON
from fraud_core.reference import to_eur
from fraud_core.rules import APPROVE as ACTION_APPROVE
from fraud_core.rules import BLOCK, FALLBACK_VERSION, REVIEW, RuleBook, strongest
from fraud_core.topics import APPROVED, FLAGGED
from fraud_core.transaction import Transaction

FLAG = "FLAGGED"
APPROVE = "APPROVED"


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """What scored one event: the model (via the service), or nothing (``degraded``: the model
    could not be reached, and the rules decide alone, see :func:`degraded_result`).

    ``threshold`` is the review threshold; ``block_threshold`` (None: the card has none) the
    score from which the model alone blocks.
    """

    score: float
    threshold: float
    model_version: str
    reasons: list[str] = field(default_factory=list)
    degraded: bool = False
    shadow_score: float | None = None
    shadow_model_version: str | None = None
    block_threshold: float | None = None


def degraded_result() -> ScoreResult:
    """The result of an event the model could not score: score 0 under a threshold of 1, so the
    model's action is APPROVE, and ``degraded`` makes :func:`decide` add the ``fallback`` rules."""
    return ScoreResult(0.0, 1.0, FALLBACK_VERSION, [], degraded=True)


def model_action(result: ScoreResult) -> str:
    """The model's own action at its two thresholds (APPROVE when degraded)."""
    if result.degraded:
        return ACTION_APPROVE
    if result.block_threshold is not None and result.score >= result.block_threshold:
        return BLOCK
    return REVIEW if result.score >= result.threshold else ACTION_APPROVE


BLOCKLIST_UNAVAILABLE_REASON = "card blocklist could not be checked (Redis unavailable)"


@dataclass(frozen=True, slots=True)
class BlocklistPolicy:
    """What a payment gets when the blocklist could not be read (Redis slow or down).

    ``when_unavailable="open"``: it is treated as not blocklisted (model and rules decide alone).
    ``"closed"`` (the default): a payment above ``closed_above_eur`` is held for REVIEW (flagged,
    the card not blocked), so a blocklisted card cannot pass a large payment while Redis is out;
    smaller ones are treated as open. ``closed_above_eur=0`` holds every payment.
    """

    when_unavailable: Literal["open", "closed"] = "closed"
    closed_above_eur: float = 100.0

    def action_when_unknown(self, txn: Transaction) -> str | None:
        """REVIEW when this payment is held because its blocklist state is unknown, else None."""
        if self.when_unavailable == "open":
            return None
        return REVIEW if to_eur(txn.amount_minor, txn.currency) > self.closed_above_eur else None


DEFAULT_BLOCKLIST_POLICY = BlocklistPolicy()


def decide(
    txn: Transaction,
    features: Mapping[str, float],
    result: ScoreResult,
    blocklisted: bool | None,
    enrichment_degraded: bool,
    decided_at_ms: int,
    rules: RuleBook,
    blocklist_policy: BlocklistPolicy = DEFAULT_BLOCKLIST_POLICY,
) -> dict[str, Any]:
    """The decision record of one event (see the module docstring for how the action is made).

    ``blocklisted`` is None when the blocklist could not be read: ``blocklist_policy`` then says
    whether the payment is held for review. Reasons, in order: the blocklist (when the card is on
    it, or could not be checked and the payment is held), the reason of each rule that fired, then
    the model's reason codes.
    """
    fired = rules.fired(txn, features, model_down=result.degraded)
    held = blocklist_policy.action_when_unknown(txn) if blocklisted is None else None
    extra = (BLOCK,) if blocklisted else (held,) if held else ()
    action = strongest([model_action(result), *(r.action for r in fired), *extra])
    reasons = [BLOCKLIST_REASON] if blocklisted else [BLOCKLIST_UNAVAILABLE_REASON] if held else []
    reasons += [r.reason for r in fired]
    reasons += result.reasons
    return {
        "event_id": txn.event_id,
        "user_id": txn.user_id,
        "decision": APPROVE if action == ACTION_APPROVE else FLAG,
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
        "action": action,
        "rules_fired": [r.id for r in fired],
        "rules_version": rules.version,
        "block_threshold": result.block_threshold,
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
        block_threshold=item.get("block_threshold"),
    )
