"""Errors of the action consumers, under the project's root :class:`FraudPipelineError`.

Retryable failures are :class:`fraud_core.exceptions.TransientError` (the action store, shared with
the console, raises it too).
"""

from __future__ import annotations

from fraud_core.exceptions import FraudPipelineError, TransientError


class ActionsError(FraudPipelineError):
    """Root of the action consumers' errors."""


class NotifyError(ActionsError, TransientError):
    """The notifier could not deliver a notification (webhook unreachable or answering 5xx)."""
