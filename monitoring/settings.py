"""Settings of the drift monitor (``python -m monitoring``). Field names are the environment
variable names; :mod:`monitoring.__main__` adds a CLI flag for each that overrides it (``--help``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from fraud_core.settings import DEV_API_KEY, ConnectionSettings
from fraud_core.topics import APPROVED, FLAGGED


class MonitorSettings(ConnectionSettings):
    """Which decisions to watch, where the model cards are, how wide the window is.

    The API key is optional, unlike for the parts that score: it only lets the monitor ask the
    service for a card missing from ``MODEL_DIR``. On Kubernetes the monitor reads the cards baked
    into the scoring image and gets no key (the scoring NetworkPolicy does not admit it either).
    """

    FLAGGED_TOPIC: str = Field(FLAGGED, min_length=1, description="Flagged decisions topic.")
    APPROVED_TOPIC: str = Field(APPROVED, min_length=1, description="Approved decisions topic.")
    GROUP_ID: str = Field("fraud-drift-monitor", min_length=1, description="Kafka consumer group.")
    AUTO_OFFSET_RESET: Literal["earliest", "latest"] = Field(
        "latest", description="Where a new consumer group starts: live traffic is what drift is about."
    )
    MODEL_DIR: Path = Field(
        Path("models"),
        description="Model registry folder; a decision's card is <MODEL_DIR>/<model_version>/card.json.",
    )
    SCORING_API_KEY: SecretStr | None = Field(
        None, description="Key for GET /v1/model; unset: cards only from MODEL_DIR (locally: the dev key)."
    )
    SCORING_URL: str = Field(
        "http://localhost:8000",
        description="Scoring service; its GET /v1/model gives the live card when MODEL_DIR lacks it.",
    )
    DRIFT_WINDOW: int = Field(2000, ge=100, le=1_000_000, description="Decisions per window, per model.")
    DRIFT_MIN_EVENTS: int = Field(
        500, ge=1, description="Publish a model's drift only once its window holds this many decisions."
    )
    DRIFT_LABEL_DELAY_S: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="How long after a payment its fraud label arrives (the simulator's: 7 days); the "
        "label-driven features are judged only once the stream has run their window plus this, in event time.",
    )
    PUBLISH_INTERVAL_S: float = Field(1.0, gt=0, le=60, description="Seconds between gauge updates.")
    MONITOR_METRICS_PORT: int = Field(9104, ge=0, le=65535, description="Prometheus port; 0 = no server.")
    BATCH_MAX: int = Field(500, ge=1, le=10_000, description="Records taken per poll.")

    @model_validator(mode="after")
    def _dev_key_locally(self) -> MonitorSettings:
        if self.SCORING_API_KEY is None and self.APP_ENV in ("local", "test"):
            object.__setattr__(self, "SCORING_API_KEY", SecretStr(DEV_API_KEY))
        return self

    @property
    def api_key(self) -> str | None:
        """The API key value, if any (never log it)."""
        return self.SCORING_API_KEY.get_secret_value() if self.SCORING_API_KEY else None
