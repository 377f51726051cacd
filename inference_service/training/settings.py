"""The training command line's settings (``python -m inference_service.training``, `make model`).

Apart from the trainer and from ``--from-topics`` so that both read them and neither imports the
other: the entry point (:mod:`inference_service.training.__main__`) dispatches between them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, CliToggleFlag, SettingsConfigDict

from fraud_core.cli import ENV_NOTE, cli_config
from fraud_core.cost import CostModel
from fraud_core.entities import DEFAULT_LABEL_DELAY_MS
from fraud_core.topics import INITIATED, LABELS
from inference_service.training.train import TrainConfig


class TrainCli(BaseSettings):
    __doc__ = (
        "Train, calibrate, evaluate and register a fraud model: from the transaction simulator, or with "
        "--from-topics from payments.initiated and payments.labels up to --until, with labels as they "
        "were known then (Kafka and the registry: KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL and the "
        "KAFKA_SASL_* settings from the environment). --seed, --model-dir, --no-promote and the cost "
        "flags apply to both; --events, --users and the --stress-* flags to the simulator only; --until, "
        f"--topic, --labels-topic and --label-delay-ms to --from-topics only. {ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config(
            "python -m inference_service.training",
            {
                "TRAIN_SEED": "seed",
                "TRAIN_EVENTS": "events",
                "TRAIN_USERS": "users",
                "MODEL_DIR": "model-dir",
                "TRAIN_REVIEW_COST_EUR": "review-cost-eur",
                "TRAIN_FALSE_BLOCK_COST_EUR": "false-block-cost-eur",
                "TRAIN_MIN_REVIEW_PRECISION": "min-review-precision",
                "TRAIN_STRESS_SEED": "stress-seed",
                "TRAIN_STRESS_EVENTS": "stress-events",
                "TRAIN_STRESS_WARMUP_EVENTS": "stress-warmup-events",
                "TRAIN_NO_PROMOTE": "no-promote",
                "TRAIN_FROM_TOPICS": "from-topics",
                "TRAIN_UNTIL": "until",
                "TRAIN_TOPIC": "topic",
                "TRAIN_LABELS_TOPIC": "labels-topic",
                "LABEL_DELAY_MS": "label-delay-ms",
            },
        ),
        frozen=True,
        case_sensitive=True,
    )

    TRAIN_SEED: int = Field(7, description="Simulator and model seed.")
    # 320,000 events at the simulator's 0.05 payments per second span 74 days of event time: the
    # 7-day label delay and the 30-day windows see more than their own length (issue 22).
    TRAIN_EVENTS: int = Field(
        320_000, ge=1, description="Simulated events (74 days, so 28-day compromises mature in the history)."
    )
    TRAIN_USERS: int = Field(2000, ge=1, description="Simulated users.")
    MODEL_DIR: Path = Field(Path("models"), description="Model registry folder.")
    TRAIN_REVIEW_COST_EUR: float = Field(
        CostModel().review_cost_eur, ge=0, description="Cost of reviewing one flagged payment, in EUR."
    )
    TRAIN_FALSE_BLOCK_COST_EUR: float = Field(
        CostModel().false_block_cost_eur, ge=0, description="Cost of blocking one legitimate payment, in EUR."
    )
    TRAIN_MIN_REVIEW_PRECISION: float = Field(
        TrainConfig().min_review_precision,
        ge=0,
        le=1,
        description="The review queue's floor: the thresholds are the cheapest pair whose REVIEW band is at "
        "least this share fraud on the calibration period (0: the cheapest pair, however many reviews).",
    )
    TRAIN_STRESS_SEED: int | None = Field(
        None, description="Seed of the held-out stress set; unset: seed + 1000."
    )
    TRAIN_STRESS_EVENTS: int = Field(80_000, ge=1, description="Events scored in the stress set (18 days).")
    TRAIN_STRESS_WARMUP_EVENTS: int = Field(
        80_000,
        ge=0,
        description="Stress-set events replayed before the scored ones, so windows of days and label rates "
        "start warm, as in a running pipeline (18 days; 0 scores from a cold start).",
    )
    TRAIN_NO_PROMOTE: CliToggleFlag[bool] = Field(
        False, description="Write the version but leave LIVE alone."
    )
    TRAIN_FROM_TOPICS: CliToggleFlag[bool] = Field(False, description="Train from the topics' history.")
    TRAIN_UNTIL: str | None = Field(
        None,
        description="--from-topics: T, ISO-8601 (e.g. 2026-02-01T00:00:00Z; UTC when no offset is given); "
        "unset: now.",
    )
    TRAIN_TOPIC: str = Field(INITIATED, min_length=1, description="--from-topics: the payments topic.")
    TRAIN_LABELS_TOPIC: str = Field(LABELS, min_length=1, description="--from-topics: the labels topic.")
    LABEL_DELAY_MS: int = Field(
        DEFAULT_LABEL_DELAY_MS, ge=0, description="--from-topics: the job's LABEL_DELAY_MS (7 days)."
    )

    @property
    def config(self) -> TrainConfig:
        """The fit's seed and the business costs the thresholds are chosen by."""
        return TrainConfig(
            seed=self.TRAIN_SEED,
            cost=CostModel(
                review_cost_eur=self.TRAIN_REVIEW_COST_EUR,
                false_block_cost_eur=self.TRAIN_FALSE_BLOCK_COST_EUR,
            ),
            min_review_precision=self.TRAIN_MIN_REVIEW_PRECISION,
        )
