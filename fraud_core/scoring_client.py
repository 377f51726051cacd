"""Client of the scoring service's batch endpoint, with retries, a circuit breaker and the
rule-based fallback, so a caller always gets a score for every event and never waits unbounded.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import orjson

from fraud_core.decision import ScoreResult, degraded_result, result_from_response, scoring_request
from fraud_core.exceptions import ConfigError
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
    """No model score, marked degraded: the rules (with their ``fallback`` set) decide alone."""
    return degraded_result()


class BatchScorer:
    """Scores batches through ``POST /v1/score/batch``; falls back to rules when the service fails.

    Synchronous, over one persistent keep-alive connection (``http.client``): the stream job calls
    it from a Flink operator thread, where a blocking call per batch costs less than any event
    loop, and a request of a few hundred rows is a few milliseconds.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 0.5,
        retries: int = 2,
        backoff_s: float = 0.02,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        url = urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"SCORING_URL={base_url!r}: expected http(s)://host[:port]")
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port
        self._path = url.path + "/v1/score/batch"
        self._headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker()
        self._conn: http.client.HTTPConnection | None = None

    def _post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout_s)
        try:
            self._conn.request("POST", self._path, body=body, headers=dict(headers))
            resp = self._conn.getresponse()
            return resp.status, resp.read()
        except BaseException:
            # A broken or timed-out connection is never reused: the next call opens a fresh one.
            self._conn.close()
            self._conn = None
            raise

    def score(
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
                    status, content = self._post(body, headers)
                except (OSError, http.client.HTTPException) as exc:
                    log.warning("scoring call failed (attempt %d): %r", attempt + 1, exc)
                else:
                    if status == 200:
                        self.breaker.record_success()
                        return [result_from_response(r) for r in orjson.loads(content)["results"]]
                    log.warning("scoring service answered HTTP %d: %s", status, content[:300])
                    if 400 <= status < 500 and status != 429:
                        break  # our request is wrong; retrying will not fix it
                if attempt < self._retries:
                    time.sleep(self._backoff_s * 2**attempt)
            self.breaker.record_failure()
        return [fallback(f) for _t, f in items]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
