"""Prometheus metrics of the drift monitor, in a registry of its own.

The two drift gauges are named in docs/INTERFACES.md: ``fraud_feature_psi{feature, model_version}`` and
``fraud_score_psi{model_version}``. The alert rules (deploy/prometheus/alerts.yml) read them, the
flag rate and the time of the last decision.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """Every metric the drift monitor exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        by_feature = ["feature", "model_version"]
        self.feature_psi = Gauge(
            "fraud_feature_psi",
            "PSI of a feature over the window vs the model's reference.",
            by_feature,
            registry=r,
        )
        self.feature_warming = Gauge(
            "fraud_feature_warming",
            "1 while a windowed feature's window (plus the label delay, for label-driven ones) is longer "
            "than the stream has run in event time: its drift is not judged and fraud_feature_psi and "
            "fraud_feature_js_distance are not exported for it; 0 once warm.",
            by_feature,
            registry=r,
        )
        self.stream_elapsed = Gauge(
            "fraud_drift_stream_event_time_seconds",
            "Event time from the first decision the monitor saw to the latest: the warm-up clock.",
            registry=r,
        )
        self.score_psi = Gauge(
            "fraud_score_psi",
            "PSI of the score over the window vs the model's reference.",
            ["model_version"],
            registry=r,
        )
        self.feature_js = Gauge(
            "fraud_feature_js_distance",
            "Jensen-Shannon distance (base 2) of a feature over the window vs the reference.",
            by_feature,
            registry=r,
        )
        self.score_js = Gauge(
            "fraud_score_js_distance",
            "Jensen-Shannon distance (base 2) of the score over the window vs the reference.",
            ["model_version"],
            registry=r,
        )
        self.flag_rate = Gauge(
            "fraud_flag_rate", "Share of FLAGGED decisions in the window.", ["model_version"], registry=r
        )
        self.flag_rate_reference = Gauge(
            "fraud_flag_rate_reference",
            "The model card's held-out flag rate (model alone, at its review threshold).",
            ["model_version"],
            registry=r,
        )
        self.missing_profile_rate = Gauge(
            "fraud_missing_profile_rate",
            "Share of decisions in the window scored without a customer profile (profile_missing = 1).",
            ["model_version"],
            registry=r,
        )
        self.window_events = Gauge(
            "fraud_drift_window_events", "Decisions in the model's window.", ["model_version"], registry=r
        )
        self.decisions = Counter(
            "fraud_drift_decisions", "Decisions consumed, by topic.", ["topic"], registry=r
        )
        self.unreferenced = Counter(
            "fraud_drift_unreferenced_decisions",
            "Decisions of a model version with no usable drift reference (rates only, no drift).",
            ["model_version"],
            registry=r,
        )
        self.bad_records = Counter(
            "fraud_drift_bad_records",
            "Records that could not be read as decisions (the action consumers dead-letter them).",
            ["error_type"],
            registry=r,
        )
        self.last_decision = Gauge(
            "fraud_drift_last_decision_timestamp_seconds",
            "Wall-clock time the last decision was consumed (the monitor's start time until the first).",
            registry=r,
        )
        self.cpu_seconds = Counter(
            "fraud_drift_cpu_seconds",
            "Process CPU time spent decoding and binning decisions and computing drift.",
            registry=r,
        )
        self.lag = Gauge(
            "fraud_drift_consumer_lag",
            "Decisions not yet consumed by the monitor: high watermark minus position, per partition.",
            ["topic", "partition"],
            registry=r,
        )
