"""Prometheus metrics of the console, in a registry of its own; names are prefixed ``fraud_console_``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ConsoleMetrics:
    """Verdicts, lost races, failed publishes, the queue's size and the sweeper's work."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.verdicts = Counter(
            "fraud_console_verdicts", "Cases resolved, by verdict.", ["verdict"], registry=r
        )
        self.conflicts = Counter(
            "fraud_console_verdict_conflicts",
            "Verdicts refused because the case was resolved already.",
            registry=r,
        )
        self.publish_failures = Counter(
            "fraud_console_publish_failures",
            "Verdicts whose label or audit Kafka did not acknowledge.",
            registry=r,
        )
        self.logins = Counter("fraud_console_logins", "Log-in attempts, by outcome.", ["outcome"], registry=r)
        self.open_cases = Gauge("fraud_console_open_cases", "Cases waiting for an analyst.", registry=r)
        self.sweep_errors = Counter(
            "fraud_console_sweep_errors",
            "Sweeps that failed as a whole (any exception), retried next interval.",
            registry=r,
        )
        self.sweep_case_failures = Counter(
            "fraud_console_sweep_case_failures",
            "Cases a sweep could not finish or resolve (skipped, tried again next sweep), by error class.",
            ["error"],
            registry=r,
        )
        self.last_good_sweep = Gauge(
            "fraud_console_last_good_sweep_timestamp_seconds",
            "When the sweeper last completed a sweep (Unix time); /healthz fails when it is stale.",
            registry=r,
        )
