"""The pipeline-health strip: scrape the components' Prometheus endpoints and summarise them.

Read from (names in deploy/README.md): the stream job's ``fraud_events_in``,
``fraud_decisions_degraded``, ``fraud_dlq_records`` and ``fraud_scoring_latency_ms`` quantiles
(the job's client-side scoring latency); the scoring service's ``scoring_request_duration_seconds``
histogram when the job's quantiles are absent; the action consumers'
``fraud_actions_decisions_total`` by action and ``fraud_actions_dead_letters_total``. Events per
second is the change of ``events_in`` between two scrapes. :func:`summarise` is pure; the
:class:`HealthSampler` thread does the I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

Sample = tuple[str, dict[str, str], float]


@dataclass(frozen=True)
class Health:
    """One reading of the strip."""

    at_s: float = 0.0
    events_total: float = 0.0
    events_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    decisions: dict[str, float] = field(default_factory=dict)
    dlq: float = 0.0
    degraded: float = 0.0
    up: dict[str, bool] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def _sum(samples: Sequence[Sample], suffix: str) -> float:
    return sum(v for name, _, v in samples if name.endswith(suffix))


def _quantile(samples: Sequence[Sample], suffix: str, q: str) -> float | None:
    values = [v for name, labels, v in samples if name.endswith(suffix) and labels.get("quantile") == q]
    values = [v for v in values if v == v]  # NaN: no observation in the window
    return max(values) if values else None


def histogram_quantile(samples: Sequence[Sample], name: str, q: float) -> float | None:
    """The ``q`` quantile of a Prometheus histogram (all label sets summed), by linear
    interpolation inside the bucket, as PromQL's histogram_quantile does."""
    buckets: dict[float, float] = {}
    for n, labels, v in samples:
        if n == f"{name}_bucket":
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if upper == float("inf"):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, count
    return lower


def summarise(
    scraped: Mapping[str, Sequence[Sample] | None], previous: Health | None, now_s: float
) -> Health:
    """The strip from the samples of each endpoint (None: unreachable) and the previous reading."""
    samples = [s for found in scraped.values() if found for s in found]
    events = _sum(samples, "fraud_events_in")
    rate = None
    if previous is not None and previous.at_s and now_s > previous.at_s and events >= previous.events_total:
        rate = (events - previous.events_total) / (now_s - previous.at_s)
    p50 = _quantile(samples, "fraud_scoring_latency_ms", "0.5")
    p99 = _quantile(samples, "fraud_scoring_latency_ms", "0.99")
    if p50 is None:
        seconds50 = histogram_quantile(samples, "scoring_request_duration_seconds", 0.5)
        seconds99 = histogram_quantile(samples, "scoring_request_duration_seconds", 0.99)
        p50 = None if seconds50 is None else seconds50 * 1000
        p99 = None if seconds99 is None else seconds99 * 1000
    decisions: dict[str, float] = {}
    for name, labels, v in samples:
        if name == "fraud_actions_decisions_total":
            decisions[labels["action"]] = decisions.get(labels["action"], 0.0) + v
    return Health(
        at_s=now_s,
        events_total=events,
        events_per_s=rate,
        p50_ms=p50,
        p99_ms=p99,
        decisions=decisions,
        dlq=_sum(samples, "fraud_dlq_records") + _sum(samples, "fraud_actions_dead_letters_total"),
        degraded=_sum(samples, "fraud_decisions_degraded"),
        up={url: found is not None for url, found in scraped.items()},
    )


class HealthSampler(threading.Thread):
    """Scrapes ``urls`` every ``interval_s`` and keeps the latest :class:`Health` in :attr:`latest`."""

    def __init__(self, urls: Sequence[str], interval_s: float, timeout_s: float = 1.0) -> None:
        super().__init__(name="health-sampler", daemon=True)
        self.urls = list(urls)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.latest = Health()
        self.stop = threading.Event()

    def _scrape(self, url: str) -> list[Sample] | None:
        try:
            resp = requests.get(url, timeout=self.timeout_s)
            resp.raise_for_status()
            return parse(resp.text)
        except (requests.RequestException, ValueError) as exc:
            log.debug("health: %s unreachable: %s", url, exc)
            return None

    def sample(self) -> Health:
        scraped = {url: self._scrape(url) for url in self.urls}
        self.latest = summarise(scraped, self.latest, time.monotonic())
        return self.latest

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval_s)
