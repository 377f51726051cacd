"""The project's exception tree. Every error we raise derives from :class:`FraudPipelineError`."""

from __future__ import annotations


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
    """A decoded record breaks a business rule (negative amount, unknown currency, ...)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__("VALIDATION", f"field {field!r}={value!r}: {reason}")
        self.field = field
        self.value = value


class SerializationError(FraudPipelineError):
    """A record does not fit its schema; the message names the field and the value."""


class RegistryError(FraudPipelineError):
    """The schema registry refused a request or could not be reached."""


class StackError(FraudPipelineError):
    """A local service could not be fetched, started or stopped."""
