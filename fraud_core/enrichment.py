"""User profiles and the card blocklist in Redis: the key layout and batched reads.

Keys: ``profile:<user_id>`` holds the profile as JSON (written by the action consumers and the
producer's ``--seed-profiles``); ``blocklist:card:<card_id>`` exists while a card is blocked (TTL).
Reads are one pipelined round trip of two MGETs per batch, never one call per event. The client is
synchronous: the stream job calls it from a Flink operator thread (THREAD mode has no event loop),
and the batched consumer from its poll loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.exceptions import RedisError

from fraud_core.exceptions import InvalidProfile
from fraud_core.features import Profile

log = logging.getLogger(__name__)

PROFILE_PREFIX = "profile:"
BLOCKLIST_PREFIX = "blocklist:card:"
# A profile holds a few hundred bytes; a value far larger is not one, and is not parsed.
MAX_PROFILE_BYTES = 64 * 1024


def profile_key(user_id: str) -> str:
    return f"{PROFILE_PREFIX}{user_id}"


def blocklist_key(card_id: str) -> str:
    return f"{BLOCKLIST_PREFIX}{card_id}"


def read_profile(raw: bytes | str) -> Profile:
    """A profile from its stored JSON.

    Raises:
        InvalidProfile: the value is too large, not JSON (or not UTF-8), or not a valid profile.
    """
    if len(raw) > MAX_PROFILE_BYTES:
        raise InvalidProfile("<profile>", f"{len(raw)} bytes", f"larger than {MAX_PROFILE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidProfile("<profile>", raw, f"not JSON: {exc}") from exc
    return Profile.from_mapping(data)


def parse_profile(raw: bytes | str | None, key: str = "") -> Profile | None:
    """A profile from its stored JSON; None when absent or malformed (treated as a new user).

    A malformed value never halts a caller: it is logged as a warning naming ``key`` and why.
    """
    if raw is None:
        return None
    try:
        return read_profile(raw)
    except InvalidProfile as exc:
        log.warning("malformed profile at Redis key %r, treated as no profile: %s", key, exc)
        return None


@dataclass(frozen=True, slots=True)
class Enrichment:
    profiles: list[Profile | None]
    # None: unknown, Redis could not be read (fraud_core.decision.BlocklistPolicy decides).
    blocklisted: list[bool | None]
    degraded: bool
    latency_s: float
    malformed_profiles: int = 0


class ProfileStore:
    """Batched reads of profiles and blocklist flags, with a bounded timeout.

    When Redis is slow or down the batch gets no profiles, an unknown blocklist state (None, for
    the blocklist policy to decide) and ``degraded=True``; the next batch tries again, so
    enrichment recovers by itself when Redis returns.
    """

    def __init__(self, url: str, timeout_s: float = 0.2) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )

    def fetch(self, user_ids: Sequence[str], card_ids: Sequence[str]) -> Enrichment:
        """Profiles and blocklist flags of one batch, in order, in one round trip."""
        t0 = time.perf_counter()
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.mget([profile_key(u) for u in user_ids])
            pipe.mget([blocklist_key(c) for c in card_ids])
            raw_profiles, raw_blocks = pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            n = len(user_ids)
            log.warning("Redis enrichment failed for a batch of %d, blocklist state unknown: %r", n, exc)
            return Enrichment([None] * n, [None] * n, True, time.perf_counter() - t0)
        profiles = [parse_profile(r, profile_key(u)) for r, u in zip(raw_profiles, user_ids, strict=True)]
        malformed = sum(p is None and r is not None for p, r in zip(profiles, raw_profiles, strict=True))
        return Enrichment(
            profiles, [r is not None for r in raw_blocks], False, time.perf_counter() - t0, malformed
        )

    def close(self) -> None:
        self._redis.close()
