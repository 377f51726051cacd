"""The design the pipeline must beat: one Python consumer that, for each event, decodes it, reads
Redis, calls ``POST /v1/score`` and produces the decision (docs/INTERFACES.md, benchmark section).

Fair by construction: per event it runs the job's own steps (:mod:`bench.baselines`: the same
intake, the same :class:`~fraud_core.scoring_step.ScoringStep` with decisions encoded unvalidated,
the same Kafka client options), on a batch of one. Only the scoring call differs, because the
naive design scores one event per request: :class:`SingleScorer` posts to ``/v1/score`` over the
job's keep-alive connection (:class:`~fraud_core.scoring_client.KeepAliveConnection`, the
transport under :class:`~fraud_core.scoring_client.BatchScorer`) with an orjson body, and checks
the answer, retries and trips the breaker as the batch client does. ``/v1/score`` takes JSON only;
the binary body exists for batches.

``python -m bench.naive_baseline`` (environment: KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL,
REDIS_URL, SCORING_URL, SCORING_API_KEY, plus INPUT_TOPIC, FLAGGED_TOPIC, APPROVED_TOPIC, DLQ_TOPIC,
GROUP_ID as for the job).
"""

from __future__ import annotations

import http.client
import logging
import re
import sys
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import orjson

from bench import baselines
from flink_jobs.settings import JobSettings
from fraud_core.decision import ScoreResult, scoring_request
from fraud_core.entities import StreamFeatures
from fraud_core.exceptions import ConfigError, MalformedAnswer
from fraud_core.registry import RegistryClient
from fraud_core.scoring_client import CircuitBreaker, KeepAliveConnection, fallback, parse_results
from fraud_core.scoring_wire import JSON
from fraud_core.transaction import Transaction

log = logging.getLogger("naive_baseline")
_SAFE_HEADER_VALUE = re.compile(r"[!-~]+")  # as BatchScorer: nothing can end the header early


class SingleScorer:
    """``POST /v1/score``, one event per request, with the batch client's transport and checks.

    The answer (one result object) is checked by :func:`~fraud_core.scoring_client.parse_results`
    as a list of one, so a malformed answer is the same transient fault it is for the job.
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
        self._conn = KeepAliveConnection(url.scheme, url.hostname, url.port, timeout_s)
        self._head = (
            f"POST {url.path}/v1/score HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"X-API-Key: {api_key}\r\nContent-Type: {JSON}\r\n"
        ).encode("ascii")
        self._retries = retries
        self._backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker()

    def score(
        self, items: Sequence[tuple[Transaction, Mapping[str, float]]], correlation_id: str = ""
    ) -> list[ScoreResult]:
        """One request per item, in order; the fallback for an item whose call failed."""
        head = self._head
        if _SAFE_HEADER_VALUE.fullmatch(correlation_id) and len(correlation_id) <= 128:
            head += f"X-Correlation-ID: {correlation_id}\r\n".encode("ascii")
        return [self._one(head, txn, features) for txn, features in items]

    def _one(self, head: bytes, txn: Transaction, features: Mapping[str, float]) -> ScoreResult:
        if not self.breaker.allow():
            return fallback(features)
        request = scoring_request(txn, features)
        body = orjson.dumps(request)
        for attempt in range(self._retries + 1):
            try:
                status, content = self._conn.post(head, body)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("scoring call failed (attempt %d): %r", attempt + 1, exc)
            else:
                if status == 200:
                    try:
                        result = parse_results(b'{"results":[%s]}' % content, [request])[0]
                    except MalformedAnswer as exc:
                        log.warning("scoring service answered 200 with a malformed body: %s", exc)
                    else:
                        self.breaker.record_success()
                        return result
                else:
                    log.warning("scoring service answered HTTP %d: %s", status, content[:300])
                    if 400 <= status < 500 and status != 429:
                        return fallback(features)  # our request is wrong; retrying will not fix it
            if attempt < self._retries:
                time.sleep(self._backoff_s * 2**attempt)
        self.breaker.record_failure()
        return fallback(features)

    def close(self) -> None:
        self._conn.close()


def run(settings: JobSettings) -> None:
    registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
    intake = baselines.intake(settings, registry, "naive-baseline")
    scorer = SingleScorer(
        settings.SCORING_URL,
        settings.api_key,
        timeout_s=settings.SCORING_TIMEOUT_MS / 1000,
        retries=settings.SCORING_RETRIES,
    )
    step = baselines.scoring_step(settings, registry, scorer)
    consumer = baselines.consumer(settings)
    out = baselines.publisher(settings)
    stream = StreamFeatures()
    running = baselines.until_stopped()
    while running():
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        decoded = baselines.decode(intake, out, msg)
        if decoded is None:
            continue
        txn, hdrs = decoded
        for record in step.run([txn], [stream.observe(txn)], [hdrs]).records:
            out.produce(*record)
    out.flush(10)
    consumer.close()
    scorer.close()


if __name__ == "__main__":
    sys.exit(baselines.main(run))
