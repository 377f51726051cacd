"""Per-key concurrency limits: how many requests of one API key are served at once.

A counter per key, raised when a request is let in and lowered when its answer is sent: two
dictionary operations on the event loop's thread (no lock is needed, the loop is single-threaded),
cheap enough for the scoring routes' hot path. Over the limit the request is refused at once with
429 and ``Retry-After``, before its body is read, so a client that floods the service cannot queue
unbounded work nor hold the stream job's share of it.
"""

from __future__ import annotations

import hashlib

import orjson


class InFlightLimit:
    """At most ``limit`` requests in flight per key. Keys are held as digests, not as the secret."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.body = orjson.dumps(
            {"detail": f"too many requests in flight for this API key (limit {limit}); retry later"}
        )
        self._in_flight: dict[bytes, int] = {}
        self._ids: dict[bytes, bytes] = {}

    def key_id(self, key: bytes) -> bytes:
        """A stable identity of ``key`` that is not the key itself (one digest per distinct key)."""
        ident = self._ids.get(key)
        if ident is None:
            ident = self._ids.setdefault(key, hashlib.sha256(key).digest()[:8])
        return ident

    def acquire(self, ident: bytes) -> bool:
        """Let one more request of ``ident`` in, or refuse it (False) when ``limit`` are in flight."""
        n = self._in_flight.get(ident, 0)
        if n >= self.limit:
            return False
        self._in_flight[ident] = n + 1
        return True

    def release(self, ident: bytes) -> None:
        """One request of ``ident`` answered."""
        n = self._in_flight.get(ident, 0) - 1
        if n > 0:
            self._in_flight[ident] = n
        else:
            self._in_flight.pop(ident, None)

    def in_flight(self, ident: bytes) -> int:
        """Requests of ``ident`` being served now."""
        return self._in_flight.get(ident, 0)
