"""Errors of the scoring service, all below the project's root :class:`FraudPipelineError`."""

from __future__ import annotations

from fraud_core.exceptions import FraudPipelineError


class InferenceError(FraudPipelineError):
    """Root of the scoring service's errors."""


class ModelRejectedError(InferenceError):
    """A model version on disk cannot be served; the message says which version, why, and what to do."""

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"model {version!r} refused: {reason}")
        self.version = version
        self.reason = reason


class ModelNotLoadedError(InferenceError):
    """No live model is loaded yet (no ``LIVE`` pointer, or every candidate was refused)."""


class TrainingError(InferenceError):
    """Training could not produce a usable model (e.g. no fraud in the held-out period)."""
