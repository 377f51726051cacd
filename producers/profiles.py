"""Seeding user profiles into Redis, where the stream job's enrichment reads them."""

from __future__ import annotations

import json
from collections.abc import Mapping

import redis

from fraud_core.connections import redacted_url
from fraud_core.enrichment import profile_key
from fraud_core.exceptions import ConfigError
from fraud_core.features import Profile

_BATCH = 1000


def seed_profiles(redis_url: str, profiles: Mapping[str, Profile]) -> int:
    """Write every profile as JSON under ``profile:<user_id>`` (pipelined); returns how many.

    Raises:
        ConfigError: Redis cannot be reached at ``redis_url``.
    """
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for n, (user_id, profile) in enumerate(profiles.items(), start=1):
            pipe.set(profile_key(user_id), json.dumps(profile.to_mapping(), separators=(",", ":")))
            if n % _BATCH == 0:
                pipe.execute()
        pipe.execute()
    except redis.RedisError as exc:
        raise ConfigError(
            f"cannot write profiles to Redis at REDIS_URL={redacted_url(redis_url)}: {exc}"
        ) from exc
    finally:
        client.close()
    return len(profiles)
