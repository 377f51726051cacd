"""The project's exception tree. Every error we raise derives from :class:`FraudPipelineError`."""

from __future__ import annotations

from fraud_core.cards import mask_pans


class FraudPipelineError(Exception):
    """Root of every error raised by this project."""


class ConfigError(FraudPipelineError):
    """A setting is missing or invalid; the message names the setting and the value."""


class DecodeError(FraudPipelineError):
    """A Kafka record could not be decoded. ``error_type`` is the DLQ reason code."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class ValidationError(DecodeError):
    """A decoded record breaks a business rule (negative amount, unknown currency, ...).

    The message never echoes a card number (a PAN in a text value shows its last four digits
    only) nor more than the first 100 characters of a long value.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        if isinstance(value, str):
            value = mask_pans(value)
        shown = repr(value)
        if len(shown) > 120:
            shown = f"{shown[:100]}... ({len(shown)} characters)"
        super().__init__("VALIDATION", f"field {field!r}={shown}: {reason}")
        self.field = field
        self.value = value


class CardNumberRefused(ValidationError):
    """A ``card_id`` is a card number (PAN), not a token. ``pan`` is the raw value, kept only so the
    dead-letter record can mask it in the original bytes: never log it."""

    def __init__(self, field: str, pan: str) -> None:
        super().__init__(
            field,
            pan,
            "is a card number (PAN), masked here and in the dead-letter record's value; only tokens allowed",
        )
        self.pan = pan


class InvalidProfile(FraudPipelineError):
    """A stored user profile is malformed; the message names the field and (a shortened form of) the value.

    Never the event's fault: callers treat the profile as absent (a new user) and log the key.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = f"{shown[:60]}... ({len(shown)} chars)"
        super().__init__(f"profile field {field!r}={shown}: {reason}")
        self.field = field


class MalformedAnswer(FraudPipelineError):
    """The scoring service answered 200 with a body that is not one valid result per item, in order.

    A transient fault of the service (retried, then the fallback), never the events' fault.
    """


class SerializationError(FraudPipelineError):
    """A record does not fit its schema; the message names the field and the value."""


class ReadTimeout(FraudPipelineError):
    """A bounded read of Kafka did not reach the offsets it was asked for in time."""


class RegistryError(FraudPipelineError):
    """The schema registry refused a request or could not be reached."""


class SchemaNotFound(RegistryError):
    """The registry answered that a schema id or subject does not exist (HTTP 404).

    For a record, its schema id is the record's fault: it goes to the dead-letter topic.
    """


class RegistryUnavailable(RegistryError):
    """The registry could not answer (refused connection, timeout, HTTP 5xx or 429).

    A transient fault, never the record's fault: retry, then fail the task (the job restarts from
    its checkpoint) or back off without committing (consumers). Never a dead letter.
    """


class StackError(FraudPipelineError):
    """A local service could not be fetched, started or stopped."""


class TransientError(FraudPipelineError):
    """A dependency (Redis, the registry, the broker, the webhook) failed in a way worth retrying.

    The action consumer does not commit past the record that hit it: it rewinds and tries again
    after a back-off, so the action is delayed, never lost and never dead-lettered for an outage.
    """


class ReviewQueueError(FraudPipelineError):
    """Root of the review queue's errors (:mod:`fraud_core.review_cases`), and of the console's,
    which is built on it (``console.exceptions.ConsoleError`` is this class)."""


class CaseNotFound(ReviewQueueError):
    """No case with that id (never opened, or resolved and past its retention)."""


class CaseConflict(ReviewQueueError):
    """The case was resolved already: the other verdict won. The HTTP edge answers 409."""

    def __init__(self, event_id: str, verdict: str, actor: str) -> None:
        super().__init__(f"case {event_id} was already resolved: {verdict} by {actor}")
        self.event_id = event_id
        self.verdict = verdict
        self.actor = actor


class StoreUnavailable(ReviewQueueError):
    """Redis failed or could not be reached; retry later."""
