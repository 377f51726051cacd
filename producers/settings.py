"""Settings of the transaction producer. Field names are the environment variable names; every
field also has a CLI flag in :mod:`producers.produce` that overrides it (see ``--help``).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from fraud_core.settings import ConnectionSettings
from fraud_core.topics import INITIATED, LABELS


class ProducerSettings(ConnectionSettings):
    """Where and how fast to produce. When neither count nor duration is set, 1000 events are sent."""

    PRODUCER_TOPIC: str = Field(INITIATED, min_length=1, description="Topic of the payment events.")
    PRODUCER_LABELS_TOPIC: str = Field(LABELS, description="Topic of the ground-truth labels; empty: none.")
    PRODUCER_RATE: float = Field(100.0, ge=0, description="Events per second, wall clock; 0 = unthrottled.")
    PRODUCER_COUNT: int | None = Field(None, gt=0, description="Number of events to send.")
    PRODUCER_DURATION_S: float | None = Field(None, gt=0, description="Seconds (wall clock) to keep sending.")
    PRODUCER_SEED: int = Field(7, ge=0, description="Simulator seed: same seed, same stream.")
    PRODUCER_USERS: int = Field(2000, ge=1, description="Simulated card holders.")
    PRODUCER_ID_SALT: str = Field(
        "",
        pattern=r"^[0-9a-z]{0,16}$",
        description="Renames users, merchants and cards (same stream otherwise): ids no earlier run used.",
    )
    PRODUCER_LABEL_DELAY_S: float | None = Field(
        None,
        ge=0,
        description="Unset: each label is sent at its simulated delay (days, in event time; 5% never: "
        "producers/SCENARIOS.md). A number: every label this many wall-clock seconds after its payment.",
    )
    PRODUCER_SPEED: float = Field(
        1.0, ge=0, description="Replay pace: 1 = original event-time gaps, 0 = max."
    )
    PRODUCER_DRIFT_AT: int | None = Field(
        None,
        ge=0,
        description="Shift the population after this many events (new countries, larger amounts, "
        "riskier merchant mix); unset: no shift.",
    )
    PRODUCER_LINGER_MS: int = Field(5, ge=0, le=10_000, description="librdkafka linger.ms (batching delay).")

    @model_validator(mode="after")
    def _count_or_duration(self) -> ProducerSettings:
        if self.PRODUCER_COUNT is not None and self.PRODUCER_DURATION_S is not None:
            raise ValueError("set PRODUCER_COUNT or PRODUCER_DURATION_S, not both")
        if not self.SCHEMA_REGISTRY_URL.startswith(("http://", "https://")):
            raise ValueError(f"SCHEMA_REGISTRY_URL must be an http(s) URL, got {self.SCHEMA_REGISTRY_URL!r}")
        if not self.KAFKA_BOOTSTRAP_SERVERS.strip():
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS must not be empty")
        return self

    @property
    def labels_topic(self) -> str | None:
        """The labels topic, or None when labels are switched off."""
        return self.PRODUCER_LABELS_TOPIC or None
