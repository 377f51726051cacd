"""The review queue: cases opened by REVIEW decisions, kept in Redis, resolved exactly once.

A case is the hash ``case:<event_id>`` (the decision's ``event_id`` is the case id, so opening the
same decision twice opens one case). Indexes:

* ``cases:open`` - sorted set of open cases by :func:`priority` (risk first, then amount);
* ``cases:opened`` - sorted set of open cases by opening time, where the timeout sweeper looks;
* ``cases:resolved`` - sorted set of resolved cases by resolution time;
* ``cases:outbox`` - resolved cases whose effects (block, label, audit) are not yet all done;
* ``review:hold:card:<card_id>`` - the review hold: the set of open cases of a card. A card is on
  hold while the set is not empty. The stream job does not read it (the model's decisions stay the
  model's); it is the state a payment gateway would read to step the card up, and what an
  analyst's Clear lifts.
* ``recent:user:<user_id>`` - the user's last :data:`RECENT_KEPT` decisions, newest first.

Opening happens inside the action consumer's own Redis transaction (:meth:`queue_open`), so a case
exists exactly when the REVIEW's effects were applied. Resolution is one Lua script
(:data:`_RESOLVE`): of two concurrent verdicts on one case exactly one finds it open and wins.

Everything here apart from :class:`CaseStore` is a pure function.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

import redis
from redis.exceptions import RedisError

from fraud_core.exceptions import CaseConflict, CaseNotFound, StoreUnavailable
from fraud_core.reference import CURRENCIES, to_eur

CASE_PREFIX = "case:"
OPEN = "cases:open"
OPENED = "cases:opened"
RESOLVED = "cases:resolved"
OUTBOX = "cases:outbox"
HOLD_PREFIX = "review:hold:card:"
RECENT_PREFIX = "recent:user:"
RECENT_KEPT = 10
RECENT_TTL_S = 30 * 24 * 3600
# Amounts in EUR cents below this sort exactly; above (10 million EUR) they tie.
_AMOUNT_SPAN = 10**12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

STATUS_OPEN = "open"
STATUS_RESOLVED = "resolved"


class Verdict(StrEnum):
    """How a case was resolved: by an analyst (CONFIRM, CLEAR) or by the timeout policy."""

    CONFIRM = "CONFIRM"
    CLEAR = "CLEAR"
    POLICY_APPROVE = "POLICY_APPROVE"
    POLICY_BLOCK = "POLICY_BLOCK"

    @property
    def blocks(self) -> bool:
        """Confirmed fraud and a policy block put the card on the blocklist."""
        return self in (Verdict.CONFIRM, Verdict.POLICY_BLOCK)

    @property
    def by_policy(self) -> bool:
        return self in (Verdict.POLICY_APPROVE, Verdict.POLICY_BLOCK)


def case_key(event_id: str) -> str:
    return f"{CASE_PREFIX}{event_id}"


def hold_key(card_id: str) -> str:
    return f"{HOLD_PREFIX}{card_id}"


def recent_key(user_id: str) -> str:
    return f"{RECENT_PREFIX}{user_id}"


def _millis(value: object) -> int:
    # fastavro reads timestamp-millis as aware datetimes; tests and replays may pass ints.
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MS
    return int(value) if isinstance(value, int | float) else 0


def amount_eur(amount_minor: int, currency: str) -> float:
    """The amount in EUR, or 0 for a currency the reference data does not know (still reviewable)."""
    return to_eur(amount_minor, currency) if currency in CURRENCIES else 0.0


def priority(score: float, eur: float) -> float:
    """The queue order of a case: the risk (the score to the hundredth) first, then the amount.

    Scores closer than a hundredth are one risk level for an analyst, so within a level the larger
    amount comes first. The result is an exact integer in a double (at most about 1e14).
    """
    risk = min(max(math.floor(score * 100), 0), 100)
    cents = min(max(round(eur * 100), 0), _AMOUNT_SPAN - 1)
    return float(risk * _AMOUNT_SPAN + cents)


def policy_verdict(eur: float, block_above_eur: float) -> Verdict:
    """What the timeout policy decides for an unreviewed case: block above the amount, else approve."""
    return Verdict.POLICY_BLOCK if eur > block_above_eur else Verdict.POLICY_APPROVE


def overdue_cutoff_ms(now_ms: int, timeout_s: float) -> int:
    """Cases opened at or before this instant are overdue."""
    return now_ms - round(timeout_s * 1000)


def recent_entry(record: Mapping[str, Any]) -> str:
    """The JSON kept in the user's recent decisions for one decision record (no card id)."""
    entry = {
        "event_id": record.get("event_id"),
        "decision": record.get("decision"),
        "action": record.get("action") or "APPROVE",
        "score": float(record.get("score") or 0.0),
        "amount_minor": int(record.get("amount_minor") or 0),
        "currency": record.get("currency") or "",
        "merchant_id": record.get("merchant_id") or "",
        "country": record.get("country") or "",
        "event_time": _millis(record.get("event_time")),
    }
    return json.dumps(entry, separators=(",", ":"))


def new_case(
    record: Mapping[str, Any],
    opened_at_ms: int,
    recent: Sequence[str],
    headers: Mapping[str, bytes] | None = None,
) -> dict[str, str]:
    """The hash of a new case for a REVIEW decision record, with the user's earlier decisions and
    the decision's propagated headers (the verdict's label and audit carry them on)."""
    amount = int(record.get("amount_minor") or 0)
    currency = str(record.get("currency") or "")
    eur = amount_eur(amount, currency)
    score = float(record.get("score") or 0.0)
    return {
        "event_id": str(record["event_id"]),
        "status": STATUS_OPEN,
        "opened_at": str(opened_at_ms),
        "priority": repr(priority(score, eur)),
        "user_id": str(record["user_id"]),
        "card_id": str(record.get("card_id") or ""),
        "amount_minor": str(amount),
        "currency": currency,
        "amount_eur": repr(eur),
        "merchant_id": str(record.get("merchant_id") or ""),
        "country": str(record.get("country") or ""),
        "device_id": str(record.get("device_id") or ""),
        "score": repr(score),
        "threshold": repr(float(record.get("threshold") or 0.0)),
        "model_version": str(record.get("model_version") or ""),
        "degraded": "1" if record.get("degraded") else "0",
        "event_time": str(_millis(record.get("event_time"))),
        "decided_at": str(_millis(record.get("decided_at"))),
        "reasons": json.dumps(list(record.get("reasons") or [])),
        "features": json.dumps(dict(record.get("features") or {}), sort_keys=True),
        "rules_fired": json.dumps(list(record.get("rules_fired") or [])),
        "rules_version": str(record.get("rules_version") or ""),
        "recent": "[" + ",".join(recent) + "]",
        "headers": json.dumps({k: v.decode("utf-8", "replace") for k, v in (headers or {}).items()}),
    }


@dataclass(frozen=True, slots=True)
class Case:
    """A case as the console shows it."""

    event_id: str
    status: str
    opened_at: int
    user_id: str
    card_id: str
    amount_minor: int
    currency: str
    amount_eur: float
    merchant_id: str
    country: str
    device_id: str
    score: float
    threshold: float
    model_version: str
    degraded: bool
    event_time: int
    reasons: list[str]
    features: dict[str, float]
    rules_fired: list[str]
    rules_version: str
    recent: list[dict[str, Any]]
    headers: dict[str, str]
    verdict: str = ""
    actor: str = ""
    resolved_at: int = 0
    note: str = ""

    @property
    def is_open(self) -> bool:
        return self.status == STATUS_OPEN

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> Case:
        h = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            event_id=h["event_id"],
            status=h.get("status", STATUS_OPEN),
            opened_at=int(h.get("opened_at") or 0),
            user_id=h.get("user_id", ""),
            card_id=h.get("card_id", ""),
            amount_minor=int(h.get("amount_minor") or 0),
            currency=h.get("currency", ""),
            amount_eur=float(h.get("amount_eur") or 0.0),
            merchant_id=h.get("merchant_id", ""),
            country=h.get("country", ""),
            device_id=h.get("device_id", ""),
            score=float(h.get("score") or 0.0),
            threshold=float(h.get("threshold") or 0.0),
            model_version=h.get("model_version", ""),
            degraded=h.get("degraded") == "1",
            event_time=int(h.get("event_time") or 0),
            reasons=json.loads(h.get("reasons") or "[]"),
            features=json.loads(h.get("features") or "{}"),
            rules_fired=json.loads(h.get("rules_fired") or "[]"),
            rules_version=h.get("rules_version", ""),
            recent=json.loads(h.get("recent") or "[]"),
            headers=json.loads(h.get("headers") or "{}"),
            verdict=h.get("verdict", ""),
            actor=h.get("actor", ""),
            resolved_at=int(h.get("resolved_at") or 0),
            note=h.get("note", ""),
        )


# KEYS: case, open, opened, resolved, outbox. ARGV: id, verdict, actor, resolved_at, note, retention_s.
# Returns {1, verdict, actor} to the winner, {0, verdict, actor} when already resolved, {-1} if missing.
_RESOLVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1, '', ''} end
if status ~= 'open' then
  return {0, redis.call('HGET', KEYS[1], 'verdict') or '', redis.call('HGET', KEYS[1], 'actor') or ''}
end
redis.call('HSET', KEYS[1], 'status', 'resolved', 'verdict', ARGV[2], 'actor', ARGV[3],
           'resolved_at', ARGV[4], 'note', ARGV[5])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
return {1, ARGV[2], ARGV[3]}
"""


class CaseStore:
    """The review queue in Redis: open (inside the consumer's transaction), list, read, resolve.

    Args:
        client: a Redis client (the console's own, or the action consumer's).
        retention_s: how long a resolved case stays readable.
        hold_ttl_s: the longest a review hold lasts when its case is never resolved.
    """

    def __init__(
        self, client: redis.Redis, retention_s: int = 30 * 24 * 3600, hold_ttl_s: int = 7 * 24 * 3600
    ):
        self._redis = client
        self.retention_s = retention_s
        self.hold_ttl_s = hold_ttl_s
        self._resolve = client.register_script(_RESOLVE)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 5.0, **kwargs: int) -> CaseStore:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, **kwargs)

    # Opening (called by the action consumer inside its WATCH/MULTI) ------------------------------

    def recent(self, pipe: Any, user_id: str) -> list[str]:
        """The user's recent decisions as stored JSON, newest first (read in the WATCH phase)."""
        return [r.decode() for r in cast("list[bytes]", pipe.lrange(recent_key(user_id), 0, RECENT_KEPT - 1))]

    @staticmethod
    def queue_remember(pipe: Any, user_id: str, entry: str) -> None:
        """Queue adding a decision to the user's recent decisions (inside MULTI)."""
        key = recent_key(user_id)
        pipe.lpush(key, entry)
        pipe.ltrim(key, 0, RECENT_KEPT - 1)
        pipe.expire(key, RECENT_TTL_S)

    def queue_open(self, pipe: Any, case: Mapping[str, str]) -> None:
        """Queue opening ``case`` (inside MULTI): the hash, both indexes and the card's review hold.

        The caller watches :func:`case_key` and skips this when the case exists already.
        """
        event_id = case["event_id"]
        pipe.hset(case_key(event_id), mapping=dict(case))
        pipe.zadd(OPEN, {event_id: float(case["priority"])})
        pipe.zadd(OPENED, {event_id: int(case["opened_at"])})
        if case["card_id"]:
            pipe.sadd(hold_key(case["card_id"]), event_id)
            pipe.expire(hold_key(case["card_id"]), self.hold_ttl_s)

    # Reading -------------------------------------------------------------------------------------

    def get(self, event_id: str) -> Case:
        """The case ``event_id``.

        Raises:
            CaseNotFound: no such case (never opened, or resolved longer ago than the retention).
            StoreUnavailable: Redis failed.
        """
        try:
            raw = cast("dict[bytes, bytes]", self._redis.hgetall(case_key(event_id)))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed reading case {event_id}: {exc}") from exc
        if not raw:
            raise CaseNotFound(f"no case {event_id!r}: never opened, or resolved and expired")
        return Case.from_hash(raw)

    def open_cases(self, limit: int = 100) -> list[Case]:
        """Open cases in queue order: highest risk first, then the largest amount."""
        return self._cases(OPEN, limit)

    def resolved_cases(self, limit: int = 20) -> list[Case]:
        """The most recently resolved cases, newest first."""
        return self._cases(RESOLVED, limit)

    def _cases(self, index: str, limit: int) -> list[Case]:
        try:
            ids = cast("list[bytes]", self._redis.zrevrange(index, 0, limit - 1))
            with self._redis.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hgetall(case_key(i.decode()))
                hashes = cast("list[dict[bytes, bytes]]", pipe.execute())
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed listing {index}: {exc}") from exc
        return [Case.from_hash(h) for h in hashes if h]

    def counts(self) -> dict[str, int]:
        """How many cases are open, resolved (within the retention) and awaiting their effects."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(OPEN)
                pipe.zcard(RESOLVED)
                pipe.scard(OUTBOX)
                open_, resolved, outbox = cast("list[int]", pipe.execute())
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed counting cases: {exc}") from exc
        return {"open": open_, "resolved": resolved, "pending_effects": outbox}

    def on_hold(self, card_id: str) -> bool:
        """Whether the card has an open review case (a review hold)."""
        try:
            return bool(self._redis.scard(hold_key(card_id)))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed reading the review hold: {exc}") from exc

    def overdue(self, now_ms: int, timeout_s: float, limit: int = 100) -> list[str]:
        """Ids of open cases opened at least ``timeout_s`` ago, oldest first."""
        try:
            ids = self._redis.zrangebyscore(OPENED, "-inf", overdue_cutoff_ms(now_ms, timeout_s), 0, limit)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed finding overdue cases: {exc}") from exc
        return [i.decode() for i in cast("list[bytes]", ids)]

    def pending_effects(self) -> list[str]:
        """Resolved cases whose block, label or audit is not confirmed done (a crash in between)."""
        try:
            return [i.decode() for i in cast("set[bytes]", self._redis.smembers(OUTBOX))]
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed reading the outbox: {exc}") from exc

    # Resolving -----------------------------------------------------------------------------------

    def resolve(self, event_id: str, verdict: Verdict, actor: str, now_ms: int, note: str = "") -> Case:
        """Resolve an open case atomically; returns the resolved case.

        Raises:
            CaseConflict: the case was resolved already (by another analyst or the policy).
            CaseNotFound: no such case.
            StoreUnavailable: Redis failed.
        """
        keys = [case_key(event_id), OPEN, OPENED, RESOLVED, OUTBOX]
        args = [event_id, verdict.value, actor, now_ms, note, self.retention_s]
        try:
            won, by_verdict, by_actor = self._resolve(keys=keys, args=args)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed resolving case {event_id}: {exc}") from exc
        if won == -1:
            raise CaseNotFound(f"no case {event_id!r}: never opened, or resolved and expired")
        if won == 0:
            raise CaseConflict(event_id, by_verdict.decode(), by_actor.decode())
        return self.get(event_id)

    def finish(self, case: Case) -> None:
        """Record that a resolved case's effects are all done: lift its hold, leave the outbox."""
        try:
            with self._redis.pipeline() as pipe:
                if case.card_id:
                    pipe.srem(hold_key(case.card_id), case.event_id)
                pipe.srem(OUTBOX, case.event_id)
                pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed finishing case {case.event_id}: {exc}") from exc

    def forget_dangling(self, event_id: str) -> None:
        """Drop ``event_id`` from the queue's indexes and the outbox: its case record is gone
        (expired), so no sweep can ever resolve or finish it."""
        try:
            with self._redis.pipeline() as pipe:
                pipe.zrem(OPEN, event_id)
                pipe.zrem(OPENED, event_id)
                pipe.srem(OUTBOX, event_id)
                pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed dropping dangling case {event_id}: {exc}") from exc

    def forget_resolved_before(self, cutoff_ms: int) -> int:
        """Drop index entries of resolved cases older than the retention (their hashes expire)."""
        try:
            removed: int = self._redis.zremrangebyscore(RESOLVED, "-inf", cutoff_ms)  # type: ignore[assignment]
            return removed
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed trimming resolved cases: {exc}") from exc

    def close(self) -> None:
        self._redis.close()
