"""Enrichment for a backtest: never the live Redis database. Either a copy of the live
``profile:*`` and ``blocklist:card:*`` keys in another database index of the same server (flushed
first), or that index left empty (no enrichment: every user reads as new, no card blocked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import redis

from backtest.exceptions import BacktestError, BadInputError
from fraud_core.connections import redacted_url
from fraud_core.enrichment import BLOCKLIST_PREFIX, PROFILE_PREFIX

EnrichmentMode = Literal["snapshot", "none"]
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class EnrichmentSource:
    """What the backtest's job reads, for the report."""

    mode: EnrichmentMode
    redis_url: str  # the backtest's own database (without its password: it goes into the report)
    source_url: str  # the live database copied (snapshot) or not touched (none)
    profiles: int
    blocklisted_cards: int
    taken_at_ms: int


def db_index(url: str) -> int:
    """The database index of a ``redis://host:port/<db>`` URL (0 when absent)."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def with_db(url: str, db: int) -> str:
    """``url`` pointing at database ``db``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def prepare(live_url: str, db: int, mode: EnrichmentMode, now_ms: int | None = None) -> EnrichmentSource:
    """Flush database ``db`` of the live server and, for ``snapshot``, copy the live keys into it.

    Keys keep their remaining time to live. The live database is only read (SCAN, DUMP, PTTL).

    Raises:
        BadInputError: ``db`` is the live database.
        BacktestError: Redis cannot be reached.
    """
    if db == db_index(live_url):
        raise BadInputError(
            f"--snapshot-db {db} is the live Redis database of {redacted_url(live_url)}; choose another index"
        )
    target_url = with_db(live_url, db)
    source = redis.Redis.from_url(live_url)
    target = redis.Redis.from_url(target_url)
    counts = {PROFILE_PREFIX: 0, BLOCKLIST_PREFIX: 0}
    try:
        target.flushdb()
        if mode == "snapshot":
            for prefix in counts:
                counts[prefix] = _copy(source, target, f"{prefix}*")
    except redis.RedisError as exc:
        raise BacktestError(
            f"enrichment snapshot from {redacted_url(live_url)} to database {db} failed: {exc}"
        ) from exc
    finally:
        source.close()
        target.close()
    return EnrichmentSource(
        mode,
        redacted_url(target_url),
        redacted_url(live_url),
        counts[PROFILE_PREFIX],
        counts[BLOCKLIST_PREFIX],
        now_ms if now_ms is not None else time.time_ns() // 1_000_000,
    )


def _copy(source: redis.Redis, target: redis.Redis, pattern: str) -> int:
    copied = 0
    batch: list[bytes] = []
    for key in source.scan_iter(match=pattern, count=_BATCH):
        batch.append(key)
        if len(batch) >= _BATCH:
            copied += _copy_batch(source, target, batch)
            batch = []
    if batch:
        copied += _copy_batch(source, target, batch)
    return copied


def _copy_batch(source: redis.Redis, target: redis.Redis, keys: list[bytes]) -> int:
    read = source.pipeline(transaction=False)
    for key in keys:
        read.dump(key)
        read.pttl(key)
    values = read.execute()
    write = target.pipeline(transaction=False)
    copied = 0
    for key, dumped, ttl in zip(keys, values[::2], values[1::2], strict=True):
        if dumped is None or ttl == -2:  # expired between SCAN and DUMP
            continue
        write.restore(key, max(int(ttl), 0), dumped, replace=True)
        copied += 1
    write.execute()
    return copied
