"""Redis glue: the effects of a decision and its idempotency marker, applied in one transaction.

Keys: ``profile:<user_id>`` and ``blocklist:card:<card_id>`` (layout of :mod:`fraud_core.enrichment`,
which the stream job reads) and ``actions:done:<event_id>``, the marker. A blocklist entry is
written only for a BLOCK decision, as JSON saying why (:func:`fraud_core.action_logic.blocklist_entry`), with
a TTL of ``block_ttl_s``; an existing entry is kept as it is (``NX``), so payments declined because
the card is blocked do not extend the block or overwrite its original reason. The marker is written in
the same MULTI/EXEC as the effects, under WATCH of the marker and the profile, so a crash can never
leave the effects applied without the marker (or the reverse), and two consumers racing on one
event apply it once. The marker records the event's audit records while they are unacknowledged
(``applied``) and shrinks to ``done`` once Kafka has them: a redelivery in between re-sends the
same audit records instead of losing them.

Given the decoded record, the same transaction also appends the decision to the user's recent
decisions and, for a REVIEW, opens its review case and puts the card on review hold
(:mod:`fraud_core.review_cases`, whose key is watched too): a case exists exactly when its REVIEW was acted on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis
from redis.exceptions import RedisError, WatchError

from fraud_core.action_logic import Decision, blocklist_entry, updated_profile
from fraud_core.enrichment import blocklist_key, parse_profile, profile_key
from fraud_core.exceptions import TransientError
from fraud_core.features import Profile
from fraud_core.review_cases import CaseStore, case_key, new_case, recent_entry
from fraud_core.rules import REVIEW

MARKER_PREFIX = "actions:done:"
DONE = "done"

AuditBuilder = Callable[[Profile | None, Profile], list[dict[str, Any]]]


def marker_key(event_id: str) -> str:
    return f"{MARKER_PREFIX}{event_id}"


class Outcome(StrEnum):
    NEW = "new"  # effects applied now
    PENDING = "pending"  # applied earlier, audit records not yet acknowledged: send them again
    DONE = "done"  # applied and audited earlier: a duplicate, nothing to do


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: Outcome
    audits: list[dict[str, Any]]


class ActionStore:
    """Applies decisions to Redis exactly once per ``event_id``."""

    def __init__(
        self,
        url: str,
        block_ttl_s: int,
        marker_ttl_s: int,
        timeout_s: float = 5.0,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        on_malformed_profile: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.cases = CaseStore(self._redis, hold_ttl_s=block_ttl_s)
        self.block_ttl_s = block_ttl_s
        self.marker_ttl_s = marker_ttl_s
        self._clock_ms = clock_ms
        self._on_malformed_profile = on_malformed_profile

    def block_entry(self, card_id: str) -> dict[str, Any] | None:
        """The blocklist entry of a card (why it is blocked), or None when it is not blocked."""
        raw = cast("bytes | None", self._redis.get(blocklist_key(card_id)))
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return {"reason": raw.decode("utf-8", "replace")}  # an entry from before the JSON form
        return entry if isinstance(entry, dict) else {"reason": str(entry)}

    def apply(
        self,
        decision: Decision,
        audits: AuditBuilder,
        record: Mapping[str, Any] | None = None,
        marker_id: str | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> Applied:
        """Apply the decision's effects and set its marker atomically, unless the marker exists.

        Args:
            record: the decoded decision record. Given, it joins the user's recent decisions, and
                a REVIEW opens its review case (:mod:`fraud_core.review_cases`) in the same transaction.
            headers: the decision's propagated headers, kept with a new case.
            marker_id: the idempotency id when it is not the decision's ``event_id`` (an analyst's
                verdict acts on the same event a second time).
        Raises:
            TransientError: Redis is unreachable or failed; nothing or everything was applied.
        """
        marker = marker_key(marker_id or decision.event_id)
        pkey = profile_key(decision.user_id)
        opens_case = record is not None and decision.action == REVIEW
        watched = [marker, pkey, case_key(decision.event_id)] if opens_case else [marker, pkey]
        try:
            with self._redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*watched)  # type: ignore[no-untyped-call]
                        existing = cast("bytes | None", pipe.get(marker))
                        if existing is not None:
                            pipe.unwatch()
                            return _from_marker(existing)
                        case = None
                        if opens_case and record is not None and not pipe.exists(case_key(decision.event_id)):
                            recent = self.cases.recent(pipe, decision.user_id)
                            case = new_case(record, self._clock_ms(), recent, headers)
                        raw_profile = cast("bytes | None", pipe.get(pkey))
                        # A malformed profile reads as none (logged with its key) and is
                        # replaced by the fresh one the decision builds: it never halts the consumer.
                        before = parse_profile(raw_profile, pkey)
                        if before is None and raw_profile is not None:
                            self._on_malformed_profile()
                        after = updated_profile(before, decision)
                        records = audits(before, after)
                        pipe.multi()
                        pipe.set(pkey, json.dumps(after.to_mapping(), separators=(",", ":")))
                        if decision.blocks:
                            entry = blocklist_entry(decision, self._clock_ms(), self.block_ttl_s)
                            pipe.set(
                                blocklist_key(decision.card_id),
                                json.dumps(entry, separators=(",", ":")),
                                ex=self.block_ttl_s,
                                nx=True,
                            )
                        if case is not None:
                            self.cases.queue_open(pipe, case)
                        if record is not None:
                            self.cases.queue_remember(pipe, decision.user_id, recent_entry(record))
                        pipe.set(marker, json.dumps({"audits": records}), ex=self.marker_ttl_s)
                        pipe.execute()
                        return Applied(Outcome.NEW, records)
                    except WatchError:
                        continue  # the profile changed under us (another writer): read it again
        except RedisError as exc:
            raise TransientError(f"Redis failed applying event {decision.event_id}: {exc}") from exc

    def mark_done(self, event_ids: Iterable[str]) -> None:
        """Record that the audit records of these events are acknowledged by Kafka."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for event_id in event_ids:
                    pipe.set(marker_key(event_id), DONE, xx=True, keepttl=True)
                pipe.execute()
        except RedisError as exc:
            raise TransientError(f"Redis failed marking events done: {exc}") from exc

    def close(self) -> None:
        self._redis.close()


def _from_marker(raw: bytes) -> Applied:
    if raw == DONE.encode():
        return Applied(Outcome.DONE, [])
    try:
        records = json.loads(raw)["audits"]
    except (ValueError, KeyError, TypeError):
        return Applied(Outcome.DONE, [])  # an unreadable marker still proves the effects were applied
    return Applied(Outcome.PENDING, list(records))
