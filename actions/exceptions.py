"""Errors of the action consumers, under the project's root :class:`FraudPipelineError`."""

from __future__ import annotations

from fraud_core.exceptions import FraudPipelineError


class ActionsError(FraudPipelineError):
    """Root of the action consumers' errors."""


class TransientError(ActionsError):
    """A dependency (Redis, the registry, the broker, the webhook) failed in a way worth retrying.

    The consumer does not commit past the record that hit it: it rewinds and tries again after a
    back-off, so the action is delayed, never lost and never dead-lettered for an outage.
    """


class NotifyError(TransientError):
    """The notifier could not deliver a notification (webhook unreachable or answering 5xx)."""
