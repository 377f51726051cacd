"""User profiles and the card blocklist in Redis: the key layout and batched async reads.

Keys: ``profile:<user_id>`` holds the profile as JSON (written by the action consumers and the
producer's ``--seed-profiles``); ``blocklist:card:<card_id>`` exists while a card is blocked (TTL).
Reads are one pipelined round trip of two MGETs per batch, never one call per event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fraud_core.features import Profile

PROFILE_PREFIX = "profile:"
BLOCKLIST_PREFIX = "blocklist:card:"


def profile_key(user_id: str) -> str:
    return f"{PROFILE_PREFIX}{user_id}"


def blocklist_key(card_id: str) -> str:
    return f"{BLOCKLIST_PREFIX}{card_id}"


def parse_profile(raw: bytes | str | None) -> Profile | None:
    """A profile from its stored JSON; None when absent or unreadable (treated as a new user)."""
    if raw is None:
        return None
    try:
        return Profile.from_mapping(json.loads(raw))
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Enrichment:
    profiles: list[Profile | None]
    blocklisted: list[bool]
    degraded: bool
    latency_s: float


class ProfileStore:
    """Batched async reads of profiles and blocklist flags, with a bounded timeout.

    When Redis is slow or down the batch gets neutral defaults and ``degraded=True``; the next
    batch tries again, so enrichment recovers by itself when Redis returns.
    """

    def __init__(self, url: str, timeout_s: float = 0.2) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )

    async def fetch(self, user_ids: Sequence[str], card_ids: Sequence[str]) -> Enrichment:
        t0 = time.perf_counter()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget([profile_key(u) for u in user_ids])
                pipe.mget([blocklist_key(c) for c in card_ids])
                raw_profiles, raw_blocks = await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            n = len(user_ids)
            return Enrichment([None] * n, [False] * n, True, time.perf_counter() - t0)
        return Enrichment(
            [parse_profile(r) for r in raw_profiles],
            [r is not None for r in raw_blocks],
            False,
            time.perf_counter() - t0,
        )

    async def close(self) -> None:
        await self._redis.aclose()
