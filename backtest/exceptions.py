"""Errors of the backtest. Bad input (exit 3) is told apart from a failure while running (exit 1)."""

from __future__ import annotations

from fraud_core.exceptions import FraudPipelineError


class BacktestError(FraudPipelineError):
    """The backtest could not complete; nothing is presented as a result."""


class BadInputError(BacktestError):
    """The request cannot be served: unknown model, empty range, range past retention, bad syntax."""


class EmptyRangeError(BadInputError):
    """The chosen range holds no events."""


class RetentionError(BadInputError):
    """The chosen range starts before the oldest record the topic still retains."""


class UnknownModelError(BadInputError):
    """A requested model version is not in the model registry folder."""
