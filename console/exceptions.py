"""Errors of the analyst console, under the project's root exception.

The review queue the console works on lives in fraud_core (the action consumer opens its cases),
and so do its errors (:class:`fraud_core.exceptions.ReviewQueueError`: ``CaseNotFound``,
``CaseConflict``, ``StoreUnavailable``). The console's root is that same class, so the HTTP edge's
``except ConsoleError`` catches a queue failure and a console failure alike.
"""

from __future__ import annotations

from fraud_core.exceptions import ReviewQueueError

ConsoleError = ReviewQueueError


class PublishFailed(ConsoleError):
    """A label or audit record was not acknowledged by Kafka; the case stays in the outbox and is
    retried by the sweeper."""


class EffectsPending(ConsoleError):
    """The verdict is recorded, but its block, label or audit could not be completed now; the
    sweeper completes them. The HTTP edge answers 503 saying so."""
