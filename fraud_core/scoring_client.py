"""Async client of the scoring service's batch endpoint, with retries, a circuit breaker and the
rule-based fallback, so a caller always gets a score for every event and never waits unbounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import httpx
import orjson

from fraud_core.decision import ScoreResult, result_from_response, scoring_request
from fraud_core.rules import FALLBACK_THRESHOLD, FALLBACK_VERSION, fallback_score
from fraud_core.transaction import Transaction

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures; after ``reset_after_s`` one
    probe request is let through (half-open); its success closes the circuit again."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing else "open"

    def allow(self) -> bool:
        if self._opened_at is None:
            return True
        if not self._probing and self._clock() - self._opened_at >= self.reset_after_s:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probing = False


def fallback(features: Mapping[str, float]) -> ScoreResult:
    """The documented rule-based score (see fraud_core.rules), marked degraded."""
    score, reasons = fallback_score(features)
    return ScoreResult(score, FALLBACK_THRESHOLD, FALLBACK_VERSION, reasons, degraded=True)


class BatchScorer:
    """Scores batches through ``POST /v1/score/batch``; falls back to rules when the service fails."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 0.5,
        retries: int = 2,
        backoff_s: float = 0.02,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + "/v1/score/batch"
        self._headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
        self._timeout = httpx.Timeout(timeout_s)
        self._retries = retries
        self._backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker()
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # Created lazily inside the running event loop that will use it.
        if self._client is None:
            limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=limits)
        return self._client

    async def score(
        self, items: Sequence[tuple[Transaction, Mapping[str, float]]], correlation_id: str = ""
    ) -> list[ScoreResult]:
        """One score per item, in order: from the model when the service answers, else the fallback."""
        if not items:
            return []
        if self.breaker.allow():
            body = orjson.dumps({"items": [scoring_request(t, f) for t, f in items]})
            headers = (
                {**self._headers, "X-Correlation-ID": correlation_id} if correlation_id else self._headers
            )
            for attempt in range(self._retries + 1):
                try:
                    resp = await self._http().post(self._url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    log.warning("scoring call failed (attempt %d): %r", attempt + 1, exc)
                else:
                    if resp.status_code == 200:
                        self.breaker.record_success()
                        return [result_from_response(r) for r in orjson.loads(resp.content)["results"]]
                    log.warning("scoring service answered HTTP %d: %s", resp.status_code, resp.text[:300])
                    if 400 <= resp.status_code < 500 and resp.status_code != 429:
                        break  # our request is wrong; retrying will not fix it
                if attempt < self._retries:
                    await asyncio.sleep(self._backoff_s * 2**attempt)
            self.breaker.record_failure()
        return [fallback(f) for _t, f in items]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
