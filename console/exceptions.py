"""Errors of the analyst console and its review queue, under the project's root exception."""

from __future__ import annotations

from fraud_core.exceptions import FraudPipelineError


class ConsoleError(FraudPipelineError):
    """Root of the console's errors."""


class CaseNotFound(ConsoleError):
    """No case with that id (never opened, or resolved and past its retention)."""


class CaseConflict(ConsoleError):
    """The case was resolved already: the other verdict won. The HTTP edge answers 409."""

    def __init__(self, event_id: str, verdict: str, actor: str) -> None:
        super().__init__(f"case {event_id} was already resolved: {verdict} by {actor}")
        self.event_id = event_id
        self.verdict = verdict
        self.actor = actor


class StoreUnavailable(ConsoleError):
    """Redis failed or could not be reached; retry later."""


class PublishFailed(ConsoleError):
    """A label or audit record was not acknowledged by Kafka; the case stays in the outbox and is
    retried by the sweeper."""


class EffectsPending(ConsoleError):
    """The verdict is recorded, but its block, label or audit could not be completed now; the
    sweeper completes them. The HTTP edge answers 503 saying so."""
