"""The business cost of a set of decisions, defined once: the trainer chooses its thresholds by it
(:mod:`inference_service.training.train`) and the backtest reports it (:mod:`backtest.evaluate`),
so a model is judged by the quantity it was tuned for.

Per payment, by its action (:data:`fraud_core.rules.ACTIONS`) and its label:

* a fraud APPROVEd is missed: it costs its amount in EUR (the chargeback), at least
  ``min_missed_fraud_eur``: a card-testing probe of 1 EUR that passes validates the card for the
  larger fraud that follows, so its cost is not its amount;
* every payment sent to REVIEW costs ``review_cost_eur`` of an analyst's time, fraud or not;
* a legitimate payment BLOCKed costs ``false_block_cost_eur`` (a declined customer, a call, a
  reissued card);
* a fraud reviewed or blocked is caught and costs nothing more than its review.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud_core.exceptions import ConfigError
from fraud_core.rules import ACTIONS, APPROVE, BLOCK, REVIEW

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CostModel:
    """EUR prices of the three outcomes that cost money (see the module docstring)."""

    review_cost_eur: float = 5.0
    false_block_cost_eur: float = 100.0
    min_missed_fraud_eur: float = 50.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"cost model: {name}={value!r} must be a finite number >= 0")

    def missed_fraud_eur(self, amount_eur: npt.ArrayLike) -> FloatArray:
        """What each fraud costs when it is approved: its amount, at least the minimum."""
        return np.maximum(np.asarray(amount_eur, dtype=np.float64), self.min_missed_fraud_eur)

    def cost(self, is_fraud: npt.ArrayLike, amount_eur: npt.ArrayLike, action: npt.ArrayLike) -> FloatArray:
        """The cost in EUR of each payment given its label, amount and action (arrays of one length).

        Raises:
            ConfigError: an action is not APPROVE, REVIEW or BLOCK (the message names it), or the
                arrays differ in length.
        """
        fraud = np.asarray(is_fraud, dtype=bool)
        amount = np.asarray(amount_eur, dtype=np.float64)
        act = np.asarray(action, dtype=str)
        if not fraud.shape == amount.shape == act.shape:
            raise ConfigError(
                f"cost: is_fraud, amount_eur and action differ in shape: {fraud.shape}, {amount.shape}, "
                f"{act.shape}"
            )
        unknown = sorted(set(np.unique(act).tolist()) - set(ACTIONS))
        if unknown:
            raise ConfigError(f"cost: action {unknown[0]!r} is not one of {', '.join(ACTIONS)}")
        out = np.zeros(fraud.shape, dtype=np.float64)
        missed = fraud & (act == APPROVE)
        out[missed] = self.missed_fraud_eur(amount[missed])
        out[act == REVIEW] = self.review_cost_eur
        out[~fraud & (act == BLOCK)] = self.false_block_cost_eur
        return out

    def breakdown(
        self, is_fraud: npt.ArrayLike, amount_eur: npt.ArrayLike, action: npt.ArrayLike
    ) -> dict[str, float]:
        """The total of :meth:`cost` split by what it pays for: missed fraud, reviews, false blocks."""
        per_event = self.cost(is_fraud, amount_eur, action)
        fraud = np.asarray(is_fraud, dtype=bool)
        act = np.asarray(action, dtype=str)
        missed = float(per_event[fraud & (act == APPROVE)].sum())
        reviews = float(per_event[act == REVIEW].sum())
        false_blocks = float(per_event[~fraud & (act == BLOCK)].sum())
        return {
            "missed_fraud_eur": missed,
            "review_eur": reviews,
            "false_block_eur": false_blocks,
            "total_eur": missed + reviews + false_blocks,
        }

    def to_json(self) -> dict[str, Any]:
        """The prices, as a model card and a backtest report state them."""
        return asdict(self)
