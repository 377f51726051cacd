"""Carrying out verdicts: resolve a case once, apply its effects, write its label and audit.

A verdict runs in three steps, each safe to repeat:

1. :meth:`CaseStore.resolve` (one Lua script): the case leaves the queue and enters the outbox; a
   second verdict on the same case gets :class:`CaseConflict`.
2. The effects through the action consumers' own :class:`ActionStore`: confirmed fraud (and a
   policy block) blocklists the card and raises the user's risk tier, under the idempotency marker
   ``verdict:<event_id>``, so a retry never raises the tier twice.
3. The label (analysts only) on ``payments.labels`` and the audit records on ``payments.actions``,
   flushed, then the review hold is lifted and the case leaves the outbox.

A crash between the steps leaves the case in the outbox; :meth:`Verdicts.sweep` finishes it (the
label and audit may then be written twice, with the same deterministic ``action_id``; a label
twice is the same label). The sweeper also resolves cases nobody reviewed in time by the policy:
those get no label, because a timeout is no ground truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

import schemas
from console.exceptions import EffectsPending, PublishFailed
from console.metrics import ConsoleMetrics
from console.settings import ConsoleSettings
from fraud_core import avro
from fraud_core.action_logic import ActionType, Decision, audit_records
from fraud_core.action_store import ActionStore
from fraud_core.cards import mask_card
from fraud_core.decision import FLAG
from fraud_core.exceptions import CaseConflict, CaseNotFound, StoreUnavailable, TransientError
from fraud_core.features import Profile
from fraud_core.registry import RegistryClient
from fraud_core.review_cases import Case, CaseStore, Verdict, policy_verdict
from fraud_core.rules import BLOCK

log = logging.getLogger(__name__)

POLICY = "policy"
FLUSH_TIMEOUT_S = 30.0


def analyst_actor(name: str) -> str:
    return f"analyst:{name}"


def label_record(case: Case, verdict: Verdict, now_ms: int) -> dict[str, Any]:
    """The ``payments.labels`` record of an analyst's verdict (policy verdicts have none)."""
    return {
        "event_id": case.event_id,
        "is_fraud": verdict is Verdict.CONFIRM,
        "fraud_type": None,
        "labelled_at": now_ms,
        "source": "analyst",
        "card_id": case.card_id or None,
        "merchant_id": case.merchant_id or None,
        "event_time": case.event_time or None,
    }


def who(actor: str) -> str:
    """An actor in words: ``analyst alice`` or ``the timeout policy``."""
    return actor.replace("analyst:", "analyst ", 1) if actor.startswith("analyst:") else "the timeout policy"


def block_decision(case: Case, verdict: Verdict, actor: str) -> Decision:
    """The BLOCK a confirming verdict carries out through the action consumers' store."""
    why = "confirmed fraud" if verdict is Verdict.CONFIRM else "review timed out above the policy amount"
    return Decision(
        event_id=case.event_id,
        user_id=case.user_id,
        decision=FLAG,
        score=case.score,
        threshold=case.threshold,
        model_version=case.model_version,
        reasons=tuple(case.reasons),
        event_time=case.event_time,
        card_id=case.card_id,
        amount_minor=case.amount_minor,
        currency=case.currency,
        country=case.country,
        action=BLOCK,
        rules_fired=tuple(case.rules_fired),
        decided_by=f"{why}: {who(actor)} (review case {case.event_id})",
    )


def verdict_audits(
    case: Case,
    verdict: Verdict,
    actor: str,
    before: Profile | None,
    after: Profile,
    now_ms: int,
    block_ttl_s: int,
) -> list[dict[str, Any]]:
    """The audit records of a verdict: block and tier for a block, the lifted hold otherwise.

    ``action_id`` is ``<event_id>:<verdict>:<action>``: deterministic, and distinct from the
    records the consumers wrote for the REVIEW itself.
    """
    if verdict.blocks:
        decision = block_decision(case, verdict, actor)
        records = [
            r
            for r in audit_records(decision, before, after, now_ms, block_ttl_s, "console")
            if r["action"] != ActionType.NOTIFY.value
        ]
    else:
        outcome = "cleared" if verdict is Verdict.CLEAR else "not reviewed in time, approved"
        records = [
            {
                "event_id": case.event_id,
                "user_id": case.user_id,
                "card_id": case.card_id,
                "action": ActionType.NOTIFY.value,
                "detail": f"review hold on card {mask_card(case.card_id)} lifted: {outcome} by {who(actor)}",
                "acted_at": now_ms,
            }
        ]
    for r in records:
        r["action_id"] = f"{case.event_id}:{verdict.value}:{r['action']}"
        r["actor"] = actor
        r["verdict"] = verdict.value
    return records


class Verdicts:
    """Resolves cases and carries the verdicts out (see the module docstring).

    Raises:
        RegistryError: the labels or actions subject lacks the current schema (run ``make up``).
    """

    def __init__(
        self,
        settings: ConsoleSettings,
        cases: CaseStore,
        metrics: ConsoleMetrics,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.settings = settings
        self.cases = cases
        self.metrics = metrics
        self._clock_ms = clock_ms
        registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
        self._label_id = registry.lookup_id(
            f"{settings.LABELS_TOPIC}-value", schemas.load_text(schemas.LABEL)
        )
        self._action_id = registry.lookup_id(
            f"{settings.ACTIONS_TOPIC}-value", schemas.load_text(schemas.ACTION)
        )
        self.store = ActionStore(settings.redis_connect_url, settings.BLOCK_TTL_S, settings.IDEMPOTENCY_TTL_S)
        self.producer = Producer(
            settings.kafka.librdkafka(
                **{"client.id": "fraud-console", "enable.idempotence": True, "acks": "all", "linger.ms": 5}
            )
        )
        self._errors: list[str] = []
        self._lock = threading.Lock()

    def resolve(self, event_id: str, verdict: Verdict, actor: str) -> Case:
        """Resolve the case and carry the verdict out; returns the resolved case.

        Raises:
            CaseConflict: the case was resolved already (the other verdict won).
            CaseNotFound: no such case.
            StoreUnavailable: Redis failed before the verdict was recorded: nothing happened.
            EffectsPending: the verdict stands; the sweeper finishes its effects.
        """
        note = ""
        if verdict.by_policy:
            note = (
                f"not resolved within {self.settings.REVIEW_TIMEOUT_S:g} s: resolved by policy "
                f"({'blocked' if verdict.blocks else 'approved'}; block above "
                f"{self.settings.POLICY_BLOCK_ABOVE_EUR:g} EUR)"
            )
        try:
            case = self.cases.resolve(event_id, verdict, actor, self._clock_ms(), note)
        except CaseConflict:
            self.metrics.conflicts.inc()
            raise
        self.metrics.verdicts.labels(verdict.value).inc()
        log.info("case %s resolved: %s by %s", event_id, verdict.value, actor)
        try:
            self.carry_out(case)
        except (StoreUnavailable, PublishFailed) as exc:
            raise EffectsPending(
                f"case {event_id}: {verdict.value} recorded; effects pending: {exc}"
            ) from exc
        return case

    def carry_out(self, case: Case) -> None:
        """Apply the effects of a resolved case, write its label and audit, then finish it."""
        verdict, actor = Verdict(case.verdict), case.actor
        now = self._clock_ms()
        if verdict.blocks:
            decision = block_decision(case, verdict, actor)
            marker = f"verdict:{case.event_id}"

            def build(before: Profile | None, after: Profile) -> list[dict[str, Any]]:
                return verdict_audits(case, verdict, actor, before, after, now, self.settings.BLOCK_TTL_S)

            try:
                audits = self.store.apply(decision, build, marker_id=marker).audits
            except TransientError as exc:  # the outbox keeps the case for the sweeper
                raise StoreUnavailable(f"case {case.event_id}: effects not applied: {exc}") from exc
        else:
            marker = ""
            audits = verdict_audits(case, verdict, actor, None, Profile(), now, self.settings.BLOCK_TTL_S)
        headers = [(k, v.encode()) for k, v in case.headers.items()]
        key = case.user_id.encode()
        with self._lock:  # one verdict's records and their delivery errors at a time
            if not verdict.by_policy:
                label = label_record(case, verdict, now)
                self._produce(
                    self.settings.LABELS_TOPIC,
                    key,
                    self._encode(self._label_id, schemas.LABEL, label),
                    headers,
                )
            for record in audits:
                self._produce(
                    self.settings.ACTIONS_TOPIC,
                    key,
                    self._encode(self._action_id, schemas.ACTION, record),
                    headers,
                )
            self._flush(case.event_id)
        if marker:
            self.store.mark_done([marker])
        self.cases.finish(case)

    def sweep(self, outbox_grace_s: float = 2 * FLUSH_TIMEOUT_S) -> int:
        """Finish verdicts left half done, then resolve overdue cases by the policy; returns how
        many cases were resolved by the policy.

        One case that fails (its record expired, an effect refused) is logged, counted in
        ``fraud_console_sweep_case_failures`` and skipped: it never stops the other cases. A case
        whose record is gone is dropped from the indexes, since no later sweep could finish it.

        Args:
            outbox_grace_s: a verdict resolved less than this long ago is still being carried out
                by whoever resolved it: left alone, so its records are not written twice.
        Raises:
            StoreUnavailable: Redis failed listing the cases (nothing to skip: the sweep failed).
        """
        now = self._clock_ms()
        for event_id in self.cases.pending_effects():
            try:
                case = self.cases.get(event_id)
                if now - case.resolved_at >= outbox_grace_s * 1000:
                    log.warning("case %s: finishing a verdict left half done (%s)", event_id, case.verdict)
                    self.carry_out(case)
            except Exception as exc:  # one broken case must not stop the others
                self._skip(event_id, "finishing its verdict", exc)
        resolved = 0
        for event_id in self.cases.overdue(now, self.settings.REVIEW_TIMEOUT_S):
            try:
                case = self.cases.get(event_id)
                verdict = policy_verdict(case.amount_eur, self.settings.POLICY_BLOCK_ABOVE_EUR)
                self.resolve(event_id, verdict, POLICY)
            except CaseConflict:
                continue  # an analyst got there first
            except Exception as exc:  # one broken case must not stop the others
                self._skip(event_id, "resolving it by the policy", exc)
                continue
            resolved += 1
        self.cases.forget_resolved_before(now - self.settings.CASE_RETENTION_S * 1000)
        return resolved

    def _skip(self, event_id: str, doing: str, exc: Exception) -> None:
        self.metrics.sweep_case_failures.labels(type(exc).__name__).inc()
        log.error("case %s: sweep failed %s, skipped: %s", event_id, doing, exc, exc_info=exc)
        if isinstance(exc, CaseNotFound):
            try:
                self.cases.forget_dangling(event_id)
            except StoreUnavailable as gone:
                log.warning("case %s: dangling entry not dropped: %s", event_id, gone)

    @staticmethod
    def _encode(schema_id: int, schema: str, record: dict[str, Any]) -> bytes:
        return avro.encode(schema_id, schemas.load(schema), record)

    def _produce(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        wire: list[tuple[str, str | bytes | None]] = list(headers)
        try:
            self.producer.produce(topic, value, key, headers=wire, on_delivery=self._delivered)
        except (BufferError, KafkaException) as exc:
            raise PublishFailed(f"cannot produce to {topic}: {exc}") from exc

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")

    def _flush(self, event_id: str) -> None:
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        errors, self._errors = self._errors, []
        if remaining or errors:
            self.metrics.publish_failures.inc()
            problems = "; ".join(errors[:3]) or f"{remaining} records unacknowledged"
            raise PublishFailed(
                f"case {event_id}: label/audit not delivered ({problems}); retried by the sweeper"
            )

    def close(self) -> None:
        self.producer.flush(FLUSH_TIMEOUT_S)
        self.store.close()
