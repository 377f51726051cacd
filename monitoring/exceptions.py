"""Errors of the drift monitor, under the project's root :class:`FraudPipelineError`."""

from __future__ import annotations

from fraud_core.exceptions import FraudPipelineError


class MonitoringError(FraudPipelineError):
    """Root of the drift monitor's errors."""


class InvalidReference(MonitoringError):
    """A model card has no usable drift reference; the message names the version and what is wrong.

    The monitor skips that version's drift (and counts its decisions as unreferenced) rather than
    stopping: the other versions' drift, the flag rate and the missing-profile rate still matter.
    """

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"model {version}: {reason} (retrain it with `make model` to add one)")
        self.version = version
        self.reason = reason
