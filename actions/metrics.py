"""Prometheus metrics of the action consumers, in a registry of their own (one per consumer)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric the consumers export; names are prefixed ``fraud_actions_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "fraud_actions_messages_consumed", "Records consumed, by topic.", ["topic"], registry=r
        )
        self.decisions = Counter(
            "fraud_actions_decisions",
            "Decisions acted on, by action (APPROVE, REVIEW, BLOCK); every REVIEW opens a review case.",
            ["action"],
            registry=r,
        )
        self.actions = Counter("fraud_actions_taken", "Actions taken, by type.", ["action"], registry=r)
        self.duplicates = Counter(
            "fraud_actions_duplicates_skipped", "Decisions already acted on, skipped.", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "fraud_actions_dead_letters",
            "Records sent to the DLQ, by error type.",
            ["error_type"],
            registry=r,
        )
        self.retries = Counter(
            "fraud_actions_transient_failures",
            "Batches rewound and retried after a dependency failed, by error class.",
            ["error"],
            registry=r,
        )
        self.notifications = Counter(
            "fraud_actions_notifications",
            "Notification attempts by outcome: delivered, retried (failed, tried again later), dead_lettered.",
            ["outcome"],
            registry=r,
        )
        self.notify_errors = Counter(
            "fraud_actions_notify_errors",
            "Errors of the notification dispatcher (failed deliveries included), by error class.",
            ["error"],
            registry=r,
        )
        self.malformed_profiles = Counter(
            "fraud_actions_malformed_profiles",
            "Stored profiles that were malformed, read as absent and replaced.",
            registry=r,
        )
        self.latency = Histogram(
            "fraud_actions_processing_seconds",
            "Time to act on one record (decode to effects applied), seconds.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.decision_delay = Histogram(
            "fraud_actions_decision_delay_seconds",
            "Decision to action: when this consumer received a decision minus its decided_at (the job's "
            "clock), seconds; under exactly-once it includes the wait for the checkpoint.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.lag = Gauge(
            "fraud_actions_consumer_lag",
            "Records not yet committed: high watermark minus committed offset, per partition.",
            ["topic", "partition"],
            registry=r,
        )
