"""Settings of a backtest (``python -m backtest``). Field names are the environment variables;
:mod:`backtest.cli` turns every field into a flag (plus the short flags the docs use)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import CLI_SUPPRESS, CliToggleFlag

from backtest.evaluate import DEFAULT_K
from fraud_core.cost import CostModel
from fraud_core.features import ALLOWED_LATENESS_MS, HORIZON_MS
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import APPROVED, FLAGGED, INITIATED, LABELS

# Warm-up that rebuilds every velocity window: the longest window plus the allowed lateness.
DEFAULT_WARMUP_MINUTES = (HORIZON_MS + ALLOWED_LATENESS_MS) / 60000


class BacktestSettings(ConnectionSettings):
    """What to replay, how to score it, and where the report goes. The Redis of ``REDIS_URL`` (the
    live one) is only read."""

    BACKTEST_TOPIC: str = Field(INITIATED, min_length=1, description="Input topic.")
    BACKTEST_FROM: str | None = Field(
        None, description="Start, ISO-8601 (UTC unless an offset is given) or epoch ms (see --time)."
    )
    BACKTEST_TO: str | None = Field(
        None, description="End (exclusive), ISO-8601 or epoch ms; default: the end at start."
    )
    BACKTEST_TIME: Literal["event", "kafka"] = Field(
        "event",
        description="What --from/--to bound: event (the payments' event_time, as a history's dates "
        "are; each partition is searched, in the event-time order producers and make import write) "
        "or kafka (the records' Kafka timestamps: when they were sent).",
    )
    BACKTEST_OFFSETS: str | None = Field(
        None, description="Per partition start-end (end exclusive), e.g. 0:100-5000,1:0-4200; others skipped."
    )
    BACKTEST_AVRO_FILE: Path | None = Field(
        None, description="A producer Avro file (with its .labels.avro) instead of a topic."
    )
    BACKTEST_WARMUP_MINUTES: float = Field(
        DEFAULT_WARMUP_MINUTES,
        ge=0,
        description="Replay this long before the range to rebuild velocity state, without evaluating it "
        "(default: the longest window plus allowed lateness).",
    )
    BACKTEST_MODELS: str = Field("", description="Comma-separated model versions (default: the live one).")
    MODEL_DIR: Path = Field(Path("models"), description="Model registry folder.")
    BACKTEST_THRESHOLDS: str = Field(
        "", description="Extra thresholds to evaluate from the scores, e.g. 0.2,0.3."
    )
    BACKTEST_ENRICHMENT: Literal["snapshot", "none"] = Field(
        "snapshot",
        description="snapshot: copy the live profile:*/blocklist:card:* keys into the snapshot database; "
        "none: an empty database.",
    )
    BACKTEST_REDIS_DB: int = Field(
        15, ge=0, description="Redis database index the backtest reads, flushed first; never the live one."
    )
    BACKTEST_REVIEW_COST_EUR: float = Field(
        CostModel().review_cost_eur, ge=0, description="Cost of one payment sent to REVIEW, EUR."
    )
    BACKTEST_FALSE_BLOCK_COST_EUR: float = Field(
        CostModel().false_block_cost_eur, ge=0, description="Cost of one legitimate payment BLOCKed, EUR."
    )
    BACKTEST_MIN_MISSED_FRAUD_EUR: float = Field(
        CostModel().min_missed_fraud_eur,
        ge=0,
        description="A missed fraud costs its amount, at least this much, EUR (the trainer's cost).",
    )
    BACKTEST_K: int = Field(
        DEFAULT_K, ge=1, description="Daily review capacity k of card precision@k (cards per UTC day)."
    )
    BACKTEST_EXPORT: Path | None = Field(
        None,
        description="Also write one row per event of the reference model (the live one, else the first "
        "of --models) to this Parquet file: event_id, user_id, card_id, merchant_id, event_time, "
        "amount_minor, score, action, rules_fired, is_fraud (null when unlabelled), model_version.",
    )
    BACKTEST_LABELS_TOPIC: str = Field(LABELS, min_length=1, description="Labels topic.")
    BACKTEST_LIVE_FLAGGED_TOPIC: str = Field(FLAGGED, description="Live decisions, for parity.")
    BACKTEST_LIVE_APPROVED_TOPIC: str = Field(APPROVED, description="Live decisions, for parity.")
    BACKTEST_PARITY_WITH_LIVE: CliToggleFlag[bool] = Field(
        False, description="Compare with the live decisions (also done whenever the live model is replayed)."
    )
    BACKTEST_OUT: Path = Field(Path("backtests"), description="Report folder root.")
    BACKTEST_KEEP_TOPICS: CliToggleFlag[bool] = Field(
        False, description="Keep the run's topics (deleted by default once read back)."
    )
    BACKTEST_RUN_ID: str = Field("", description=CLI_SUPPRESS)

    @property
    def cost(self) -> CostModel:
        """The business cost the report prices decisions with (the trainer's, by default)."""
        return CostModel(
            review_cost_eur=self.BACKTEST_REVIEW_COST_EUR,
            false_block_cost_eur=self.BACKTEST_FALSE_BLOCK_COST_EUR,
            min_missed_fraud_eur=self.BACKTEST_MIN_MISSED_FRAUD_EUR,
        )
