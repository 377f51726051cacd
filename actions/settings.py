"""Settings of the action consumers (``python -m actions``). Field names are the environment
variable names; :mod:`actions.__main__` adds a CLI flag for each that overrides it (``--help``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from fraud_core.clock import DAY_S
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import ACTIONS, APPROVED, DLQ, FLAGGED


class ConsumerSettings(ConnectionSettings):
    """Which topics to act on, where audits and dead letters go, and how long effects last."""

    FLAGGED_TOPIC: str = Field(FLAGGED, min_length=1, description="Decisions to act on by blocking.")
    APPROVED_TOPIC: str = Field(APPROVED, min_length=1, description="Decisions the profiles learn from.")
    ACTIONS_TOPIC: str = Field(ACTIONS, min_length=1, description="Audit records of every action taken.")
    DLQ_TOPIC: str = Field(DLQ, min_length=1, description="Dead letters: records that cannot be acted on.")
    GROUP_ID: str = Field("fraud-actions", min_length=1, description="Kafka consumer group.")
    AUTO_OFFSET_RESET: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts reading."
    )
    ACTIONS_METRICS_PORT: int = Field(9102, ge=0, le=65535, description="Prometheus port; 0 = no server.")
    NOTIFY_WEBHOOK_URL: str | None = Field(
        None, description="POST a JSON notification here for each flagged decision; unset = log line."
    )
    NOTIFY_TIMEOUT_S: float = Field(5.0, gt=0, description="Timeout of one webhook call.")
    NOTIFY_MAX_ATTEMPTS: int = Field(
        12, ge=1, le=1000, description="Webhook attempts before a notification becomes a dead letter."
    )
    NOTIFY_RETRY_BASE_S: float = Field(
        1.0, gt=0, description="Back-off after the first failed notification; doubles on each failure."
    )
    NOTIFY_RETRY_MAX_S: float = Field(
        300.0, gt=0, description="Longest back-off between notification attempts."
    )
    BLOCK_TTL_S: int = Field(
        7 * DAY_S,
        gt=0,
        description="How long a card stays blocklisted after a BLOCK decision (REVIEW never blocks).",
    )
    IDEMPOTENCY_TTL_S: int = Field(
        7 * DAY_S,
        gt=0,
        description="How long an event_id is remembered as done; at least the decision topics' retention.",
    )
    AUDIT_PROFILE_UPDATES: bool = Field(
        True, description="Also audit UPDATE_PROFILE (one record per approval)."
    )
    BATCH_MAX: int = Field(200, ge=1, le=10_000, description="Records processed per poll before one commit.")

    @field_validator("NOTIFY_WEBHOOK_URL")
    @classmethod
    def _webhook_is_http(cls, value: str | None) -> str | None:
        if not value:
            return None  # an empty variable (compose passes one through) means: no webhook
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"NOTIFY_WEBHOOK_URL must be an http(s) URL, got {value!r}")
        return value
