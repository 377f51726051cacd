"""Settings of the scoring job. Field names are the environment variables; CLI flags override them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from fraud_core.connections import redis_url, url_password
from fraud_core.entities import DEFAULT_LABEL_DELAY_MS
from fraud_core.settings import ApiKeySettings, ScoringClientSettings
from fraud_core.topics import APPROVED, DLQ, FLAGGED, INITIATED, LABELS

REPO_ROOT = Path(__file__).resolve().parents[1]


class JobSettings(ScoringClientSettings):
    """Everything the job needs; defaults run it on the local stack of ``make up``."""

    INPUT_TOPIC: str = Field(INITIATED, min_length=1, description="Payments to score (Avro, key = user_id).")
    FLAGGED_TOPIC: str = Field(FLAGGED, min_length=1, description="Decisions FLAGGED (REVIEW and BLOCK).")
    APPROVED_TOPIC: str = Field(APPROVED, min_length=1, description="Decisions APPROVED.")
    DLQ_TOPIC: str = Field(DLQ, min_length=1, description="Dead letters: bad records, with their reason.")
    LABELS_TOPIC: str = Field(
        LABELS,
        min_length=1,
        description="Labels (analyst verdicts, chargebacks, imports): the second source, read from the "
        "earliest retained label; confirmed frauds feed the merchant and card fraud-rate features.",
    )
    LABEL_DELAY_MS: int = Field(
        default=DEFAULT_LABEL_DELAY_MS,
        ge=0,
        description="The label-driven features at time t count frauds of payments in [t - delay - w, t - "
        "delay] (w = 1, 7, 30 days) labelled by t. Training must use the same value.",
    )
    GROUP_ID: str = Field(
        "fraud-scoring-job", min_length=1, description="Kafka consumer group of the source."
    )
    START_FROM: str = Field(
        "group-offsets",
        description="Where a start without a checkpoint reads from: group-offsets (committed, else "
        "earliest) | earliest | latest | timestamp:<epoch ms>.",
    )
    RESUME_REWIND_RECORDS: int = Field(
        default=20_000,
        ge=0,
        description="With group-offsets and no checkpoint: read this many records per partition again "
        "before the committed offsets, skipping those already decided (flink_jobs/resume.py); 0 = no "
        "rewind.",
    )
    STOP_AT: Literal["none", "latest"] | str = Field(
        "none",
        description="For bounded runs (backtests): none | latest (the end offsets at start) | "
        "timestamp:<epoch ms>.",
    )
    DELIVERY: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="exactly-once: Kafka transactions, decisions visible at checkpoints; "
        "at-least-once: visible at once, replayed after a crash.",
    )
    TRANSACTIONAL_ID_PREFIX: str = Field(
        "fraud-scoring", min_length=1, description="Prefix of the exactly-once sink's transactional ids."
    )
    CHECKPOINT_INTERVAL_MS: int | None = Field(
        default=None,
        ge=100,
        description="Checkpoint interval; unset: 1 s under exactly-once (decisions become visible at "
        "checkpoints), 5 s under at-least-once (see flink_jobs/README.md).",
    )
    CHECKPOINT_DIR: str = Field(
        "",
        description="Checkpoint storage: a folder or any URI (s3://, hdfs://, file://); empty: .stack/state/checkpoints/<JOB_NAME>.",
    )
    JOB_PARALLELISM: int = Field(default=1, ge=1, le=64, description="Parallelism of every operator.")
    FLINK_CONNECTOR_DIR: str = Field(
        str(REPO_ROOT / ".stack" / "lib" / "flink"),
        description="Folder of the Flink jars (the Kafka SQL connector) that `make fetch` resolved.",
    )
    DECODE_IN: Literal["python", "jvm"] = Field(
        "python",
        description="Where payments are decoded: python (FeaturesFunction, fastavro) | jvm (the Java "
        "function decode_payment of DECODER_JAR before the first Python operator; same dead-letter "
        "reasons, measured in flink_jobs/README.md).",
    )
    DECODER_JAR: str = Field(
        str(REPO_ROOT / ".stack" / "lib" / "decoder" / "fraud-decoder.jar"),
        description="The JVM decoder's jar (DECODE_IN=jvm), built by `make fetch` from deploy/maven/decoder.",
    )
    BUFFER_TIMEOUT_MS: int = Field(
        default=2, ge=0, description="Network buffer timeout: the latency a record can wait in a buffer."
    )
    SCORING_BATCH_MAX: int = Field(default=256, ge=1, le=1000, description="Largest scoring micro-batch.")
    SCORING_LINGER_MS: int = Field(
        default=4, ge=1, description="How long a batch waits for more events at low rates."
    )
    SCORING_LINGER_MAX_MS: int = Field(
        default=20, ge=1, description="How long a batch may wait as the rate grows."
    )
    SCORING_SHARDS_PER_SUBTASK: int = Field(
        default=1, ge=1, le=16, description="Scoring batches built side by side per subtask."
    )
    SCORING_TIMEOUT_MS: int = Field(
        default=500, ge=10, description="Timeout of one call to the scoring service (then rules fallback)."
    )
    SCORING_RETRIES: int = Field(default=2, ge=0, description="Retries of a failed scoring call.")
    REDIS_TIMEOUT_MS: int = Field(default=200, ge=1, description="Timeout of the enrichment's Redis reads.")
    BLOCKLIST_WHEN_UNAVAILABLE: Literal["open", "closed"] = Field(
        "closed",
        description="When the blocklist cannot be read: open lets the model and rules decide alone; "
        "closed holds payments above BLOCKLIST_CLOSED_ABOVE_EUR for REVIEW.",
    )
    BLOCKLIST_CLOSED_ABOVE_EUR: float = Field(
        default=100.0,
        ge=0,
        allow_inf_nan=False,
        description="Fail-closed threshold (EUR) of BLOCKLIST_WHEN_UNAVAILABLE=closed; 0: every payment.",
    )
    EVENT_TIME_MAX_AHEAD_MS: int = Field(
        default=24 * 3600 * 1000,
        ge=0,
        description="An event_time further ahead of the processing time is dead-lettered (VALIDATION).",
    )
    EVENT_TIME_MAX_AGE_MS: int | None = Field(
        default=None,
        ge=0,
        description="An older event_time is dead-lettered; unset: only the floor of 2000-01-01 (replays "
        "of old topics must pass).",
    )
    PYTHON_PROFILE: bool = Field(
        False, description="cProfile every Python operator; the stats go to the job's log."
    )
    METRICS_PORT: int = Field(
        default=9249, ge=0, description="Prometheus metrics port; 0: no metrics reporter."
    )
    JOB_NAME: str = Field("fraud-scoring", min_length=1, description="Flink job name (and log folder).")

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
