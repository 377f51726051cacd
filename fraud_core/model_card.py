"""The model card: what a trained model is, how it decides, and what it was measured at.

Training builds one (``inference_service/training/train.py``), the scoring service loads and
serves it (``GET /v1/model``), the drift monitor reads its ``drift_reference``, the backtest, the
bench and the fault rig read its thresholds and training split. One typed class for all of them,
so a field is validated once, where the card is read, instead of by hand at each reader.

The top-level fields and the ones code reads are typed. The large report sections (``metrics``,
``ablation``, ``ablation_groups``, ``business_cost``, ``hyperparameters``) stay JSON objects:
they are written for people and copied through, and a section added later must not make an older
reader refuse the card. Unknown top-level fields are kept as they are (``extra="allow"``), for the
same reason, and the JSON written has the fields in the order declared here.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Period(BaseModel):
    """One period of the time split: its size and its event-time range (epoch milliseconds)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    events: int
    frauds: int
    from_event_time: int
    to_event_time: int


class Split(BaseModel):
    """The time split: train on the earliest events, calibrate on the next, hold out the latest."""

    model_config = ConfigDict(extra="allow", frozen=True)

    train: Period
    calibration: Period
    held_out: Period


class TrainingData(BaseModel):
    """What the model was trained on: the data's identity, where it came from and its split."""

    model_config = ConfigDict(extra="allow", frozen=True)

    fingerprint_sha256: str
    source: dict[str, Any]
    events: int
    fraud_rate: float
    split: Split


class ModelCard(BaseModel):
    """A model version's card, as ``<model_dir>/<version>/card.json`` holds it.

    ``threshold`` is the review threshold (a probability in (0, 1)); ``block_threshold`` the block
    threshold, null when the score alone never blocks, else in [threshold, 1]. ``features`` is the
    feature order the estimator expects; ``reference_values`` the training medians by feature, which
    the reason codes start from. Strict: a number written as a string is refused, not converted.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    version: str = Field(min_length=1)
    model_type: str = ""
    features: list[str]
    threshold: float = Field(gt=0.0, lt=1.0)
    block_threshold: float | None = Field(None, le=1.0)
    threshold_rationale: str = ""
    business_cost: dict[str, Any] = Field(default_factory=dict)
    training_data: TrainingData | None = None  # None: a card written by hand (tests)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str] = Field(default_factory=dict)
    reference_values: dict[str, float]
    drift_reference: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    ablation: dict[str, Any] = Field(default_factory=dict)
    ablation_groups: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _block_not_below_review(self) -> Self:
        if self.block_threshold is not None and self.block_threshold < self.threshold:
            raise ValueError(
                f"block_threshold {self.block_threshold!r} must be null or a probability in "
                f"[threshold, 1] (threshold is {self.threshold!r})"
            )
        return self

    @property
    def held_out_flag_rate(self) -> float | None:
        """The held-out flag rate of the model alone, when the card gives one."""
        held_out = self.metrics.get("held_out")
        rate = held_out.get("flag_rate") if isinstance(held_out, dict) else None
        return float(rate) if isinstance(rate, int | float) else None

    def to_json(self) -> dict[str, Any]:
        """The card as JSON-ready data (``GET /v1/model`` serves this; ``card.json`` holds it)."""
        return self.model_dump(mode="json")
