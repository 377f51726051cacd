"""Prometheus metrics of the scoring service, on a registry of its own (one per app instance)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10_000)
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class ScoreHistogram(Collector):
    """Score distribution per model version and role, fed a whole batch at a time.

    ``prometheus_client.Histogram`` only observes one value per call; a 512-row batch would spend
    ~1 ms in Python doing that, so this collector bins with numpy and exposes the same series.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._doc = documentation
        self._edges = np.array(SCORE_BUCKETS, dtype=np.float64)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], tuple[npt.NDArray[np.int64], list[float]]] = {}

    def observe_many(self, model_version: str, role: str, scores: npt.NDArray[np.float64]) -> None:
        """Count every score of a batch in its bucket."""
        counts = np.bincount(
            np.searchsorted(self._edges, scores, side="left"), minlength=len(self._edges) + 1
        )
        total = float(scores.sum())
        with self._lock:
            series = self._series.setdefault(
                (model_version, role), (np.zeros(len(self._edges) + 1, np.int64), [0.0])
            )
            series[0][:] += counts[: len(self._edges) + 1]
            series[1][0] += total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=["model_version", "role"])
        with self._lock:
            snapshot = [(k, v[0].copy(), v[1][0]) for k, v in self._series.items()]
        for (version, role), counts, total in snapshot:
            cumulative = np.cumsum(counts).tolist()
            buckets = [(repr(edge), float(c)) for edge, c in zip(SCORE_BUCKETS, cumulative, strict=False)]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric([version, role], buckets, total)
        yield family


class Metrics:
    """Every collector of the service, registered on :attr:`registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "scoring_request_duration_seconds",
            "Request latency by route, method and status class",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "scoring_batch_size", "Items per scoring request", ["route"], buckets=BATCH_BUCKETS, registry=r
        )
        self.scores = ScoreHistogram("scoring_score", "Distribution of returned fraud scores")
        r.register(self.scores)
        self.decisions = Counter(
            "scoring_decisions",
            "Decisions by model version and outcome",
            ["model_version", "decision"],
            registry=r,
        )
        self.errors = Counter("scoring_errors", "Refused or failed requests by kind", ["kind"], registry=r)
        self.shadow_agreement = Counter(
            "scoring_shadow_decisions",
            "Shadow vs live decision agreement (shadow decision at the shadow model's own threshold)",
            ["live_version", "shadow_version", "agreement"],
            registry=r,
        )
        self.reloads = Counter(
            "scoring_model_reloads", "Model loads by role and outcome", ["role", "outcome"], registry=r
        )
        self.model_info = Gauge(
            "scoring_model_info",
            "1 for the model versions being served",
            ["role", "model_version"],
            registry=r,
        )
