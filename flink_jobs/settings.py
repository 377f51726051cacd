"""Settings of the scoring job. Field names are the environment variables; CLI flags override them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from fraud_core.connections import redis_url, url_password
from fraud_core.settings import ApiKeySettings, ScoringClientSettings
from fraud_core.topics import APPROVED, DLQ, FLAGGED, INITIATED

REPO_ROOT = Path(__file__).resolve().parents[1]


class JobSettings(ScoringClientSettings):
    """Everything the job needs; defaults run it on the local stack of ``make up``."""

    INPUT_TOPIC: str = INITIATED
    FLAGGED_TOPIC: str = FLAGGED
    APPROVED_TOPIC: str = APPROVED
    DLQ_TOPIC: str = DLQ
    GROUP_ID: str = "fraud-scoring-job"
    # group-offsets (committed, else earliest) | earliest | latest | timestamp:<epoch ms>
    START_FROM: str = "group-offsets"
    # group-offsets without a checkpoint: read this many records per partition again before the
    # committed offsets, skipping those already decided (flink_jobs/resume.py); 0 = no rewind.
    RESUME_REWIND_RECORDS: int = Field(default=20_000, ge=0)
    # For bounded runs (backtests): stop at the latest offsets at start, or at a timestamp.
    STOP_AT: Literal["none", "latest"] | str = "none"
    DELIVERY: Literal["at-least-once", "exactly-once"] = "at-least-once"
    TRANSACTIONAL_ID_PREFIX: str = "fraud-scoring"
    # Unset: 1 s under exactly-once (decisions become visible at checkpoints), 5 s under
    # at-least-once (where it only bounds the replay after a crash, and each checkpoint's sink
    # flush and snapshot briefly stalls the stream: see flink_jobs/README.md).
    CHECKPOINT_INTERVAL_MS: int | None = Field(default=None, ge=100)
    CHECKPOINT_DIR: str = ""
    JOB_PARALLELISM: int = Field(default=1, ge=1, le=64)
    # Flink jars (the Kafka SQL connector). Defaults to what `make fetch` resolved.
    FLINK_CONNECTOR_DIR: str = str(REPO_ROOT / ".stack" / "lib" / "flink")
    # Latency knobs (see flink_jobs/README.md): network buffer timeout, scoring micro-batches.
    BUFFER_TIMEOUT_MS: int = Field(default=2, ge=0)
    SCORING_BATCH_MAX: int = Field(default=256, ge=1, le=1000)
    # A batch waits SCORING_LINGER_MS at low rates, up to SCORING_LINGER_MAX_MS as the rate grows.
    SCORING_LINGER_MS: int = Field(default=4, ge=1)
    SCORING_LINGER_MAX_MS: int = Field(default=20, ge=1)
    SCORING_SHARDS_PER_SUBTASK: int = Field(default=1, ge=1, le=16)
    SCORING_TIMEOUT_MS: int = Field(default=500, ge=10)
    SCORING_RETRIES: int = Field(default=2, ge=0)
    REDIS_TIMEOUT_MS: int = Field(default=200, ge=1)
    # When the blocklist cannot be read (Redis slow or down): "open" lets the model and rules decide
    # alone; "closed" holds payments above BLOCKLIST_CLOSED_ABOVE_EUR for REVIEW (0: every payment).
    # See fraud_core.decision.BlocklistPolicy.
    BLOCKLIST_WHEN_UNAVAILABLE: Literal["open", "closed"] = "closed"
    BLOCKLIST_CLOSED_ABOVE_EUR: float = Field(default=100.0, ge=0, allow_inf_nan=False)
    # Bounds of an event's event_time around the processing time; outside them it is dead-lettered
    # (VALIDATION). Unset max age: only the floor of 2000-01-01 (replays of old topics must pass).
    # See fraud_core.transaction.EventTimeBounds.
    EVENT_TIME_MAX_AHEAD_MS: int = Field(default=24 * 3600 * 1000, ge=0)
    EVENT_TIME_MAX_AGE_MS: int | None = Field(default=None, ge=0)
    # cProfile every Python operator; stats go to the job's log (where the time goes).
    PYTHON_PROFILE: bool = False
    METRICS_PORT: int = Field(default=9249, ge=0)
    JOB_NAME: str = "fraud-scoring"

    @property
    def checkpoint_interval_ms(self) -> int:
        """The checkpoint interval in force: the setting, or the default of the delivery mode."""
        if self.CHECKPOINT_INTERVAL_MS is not None:
            return self.CHECKPOINT_INTERVAL_MS
        return 1000 if self.DELIVERY == "exactly-once" else 5000


class OperatorSecrets(ApiKeySettings):
    """The secrets the job's Python operators read from the TaskManager's environment in ``open()``.

    They are never in the operators' pickled state (the job graph, which a JobManager stores and a
    savepoint keeps): the graph carries ``REDIS_URL`` without its password and no API key. On
    Kubernetes the TaskManager pods get these variables from Secrets; locally the job's process
    has them (the mini-cluster runs in it).
    """

    # Only read for a password written inside it; where Redis is comes from the job graph.
    REDIS_URL: str = ""
    REDIS_USERNAME: str | None = None
    REDIS_PASSWORD: SecretStr | None = None

    def redis_url(self, url: str) -> str:
        """``url`` (from the job graph) with this environment's Redis credentials in it."""
        password = self.REDIS_PASSWORD or url_password(self.REDIS_URL)
        return redis_url(url, self.REDIS_USERNAME or None, password)
