"""Settings shared by every deployable. Each entrypoint builds its own settings class on these;
library code receives values as arguments and never reads the environment itself. Field names
are the environment variable names (see docs/INTERFACES.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraud_core.connections import (
    KafkaConnection,
    SaslMechanism,
    SecurityProtocol,
    redacted_url,
    redis_url,
    url_password,
)
from fraud_core.rules import RulesError, load_rules

# Only valid when APP_ENV is local or test; refused anywhere else.
DEV_API_KEY = "dev-local-key-not-secret"
# Outside local mode a key shorter than this is refused at start (32 random URL-safe characters
# are about 190 bits).
MIN_API_KEY_LENGTH = 32
LOCAL_MODES = ("local", "test")
MISSING_APP_ENV = (
    "APP_ENV is not set: set APP_ENV=production (or staging) where this is deployed, or APP_ENV=local "
    "on a developer machine (make demo, make serve, make console and the other make targets set it)"
)
_KEY_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def checked_key(name: str, key: SecretStr | None, app_env: str, dev_key: str) -> SecretStr:
    """The key a setting ``name`` holds: ``dev_key`` in local mode when unset; elsewhere it must be
    set, not ``dev_key``, and at least :data:`MIN_API_KEY_LENGTH` characters long.

    Raises:
        ValueError: naming the setting and what is wrong with it (never its value).
    """
    value = key.get_secret_value() if key else None
    if app_env in LOCAL_MODES:
        return key if key else SecretStr(dev_key)
    if not value or value == dev_key:
        raise ValueError(
            f"{name} must be set (and not the development key) when APP_ENV={app_env}; {_KEY_HINT}"
        )
    if len(value) < MIN_API_KEY_LENGTH:
        raise ValueError(
            f"{name} is {len(value)} characters long; at least {MIN_API_KEY_LENGTH} are required when "
            f"APP_ENV={app_env}; {_KEY_HINT}"
        )
    return key  # type: ignore[return-value]  # not None: value is set


def settings_errors(exc: PydanticValidationError) -> str:
    """The messages of a settings ``ValidationError``, without the input values (they may be secrets)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


class AppSettings(BaseSettings):
    """What every deployable has: where it runs and how loud it logs."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    APP_ENV: Literal["local", "test", "staging", "production"] = Field(
        description="Where this runs; outside local and test, secrets have no development default. "
        "Required, with no default: a deployment that forgot it must not get development secrets "
        "(the make targets set local).",
    )
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")

    @model_validator(mode="before")
    @classmethod
    def _app_env_given(cls, data: object) -> object:
        # Fail closed, saying what to set: a missing APP_ENV would otherwise read as "Field required".
        if isinstance(data, dict) and not data.get("APP_ENV"):
            raise ValueError(MISSING_APP_ENV)
        return data


class ConnectionSettings(AppSettings):
    """Where the shared services are and how to authenticate to them. Defaults point at the local
    stack of ``make up`` (PLAINTEXT Kafka, Redis without a password).

    Clients are built from :attr:`kafka` (the librdkafka dict, the Flink connector options) and
    :attr:`redis_connect_url`; see :mod:`fraud_core.connections`. A password written inside
    ``REDIS_URL`` is moved to ``REDIS_PASSWORD`` at start, so ``REDIS_URL`` is safe to log.
    """

    KAFKA_BOOTSTRAP_SERVERS: str = Field(default="localhost:9092", description="Kafka bootstrap servers.")
    KAFKA_SECURITY_PROTOCOL: SecurityProtocol = Field(
        default="PLAINTEXT", description="Kafka security.protocol (SASL_SSL in production)."
    )
    KAFKA_SASL_MECHANISM: SaslMechanism | None = Field(default=None, description="Kafka SASL mechanism.")
    KAFKA_SASL_USERNAME: str | None = Field(default=None, description="Kafka SASL user of this application.")
    KAFKA_SASL_PASSWORD: SecretStr | None = Field(
        default=None, description="Kafka SASL password (environment only, never a flag)."
    )
    KAFKA_SSL_CA_FILE: str | None = Field(
        default=None,
        description="PEM bundle of the CA that signed the brokers' certificates (unset: the system's CAs).",
    )
    SCHEMA_REGISTRY_URL: str = Field(
        default="http://localhost:8081/apis/ccompat/v7",
        description="Confluent-compatible schema registry base URL.",
    )
    REDIS_URL: str = Field(
        default="redis://localhost:6379/0", description="Redis: profiles, blocklist, idempotency markers."
    )
    REDIS_USERNAME: str | None = Field(
        default=None, description="Redis ACL user of this application (or inside REDIS_URL)."
    )
    REDIS_PASSWORD: SecretStr | None = Field(
        default=None, description="Redis password (environment only, never a flag; or inside REDIS_URL)."
    )

    @model_validator(mode="after")
    def _connections_valid(self) -> ConnectionSettings:
        if self.REDIS_PASSWORD is None and (inline := url_password(self.REDIS_URL)) is not None:
            object.__setattr__(self, "REDIS_PASSWORD", inline)
        object.__setattr__(self, "REDIS_URL", redacted_url(self.REDIS_URL))
        self.kafka  # noqa: B018 - an incomplete SASL setting fails at start, not at the first client
        return self

    @property
    def kafka(self) -> KafkaConnection:
        """How every Kafka client of this deployable connects."""
        return KafkaConnection(
            bootstrap_servers=self.KAFKA_BOOTSTRAP_SERVERS,
            security_protocol=self.KAFKA_SECURITY_PROTOCOL,
            sasl_mechanism=self.KAFKA_SASL_MECHANISM,
            sasl_username=self.KAFKA_SASL_USERNAME or None,
            sasl_password=self.KAFKA_SASL_PASSWORD,
            ssl_ca_file=self.KAFKA_SSL_CA_FILE or None,
        )

    @property
    def redis_connect_url(self) -> str:
        """``REDIS_URL`` with the credentials in it, for ``redis.Redis.from_url``: never log it."""
        return redis_url(self.REDIS_URL, self.REDIS_USERNAME or None, self.REDIS_PASSWORD)


class ApiKeySettings(AppSettings):
    """The scoring API key: the development key locally; elsewhere required, not that key, and at
    least :data:`MIN_API_KEY_LENGTH` characters (clients check it too, so a short key fails at
    every start, not only at the service's)."""

    SCORING_API_KEY: SecretStr | None = Field(
        default=None, description="X-API-Key of the scoring service; defaults to the development key locally."
    )

    @model_validator(mode="after")
    def _api_key_required_outside_local(self) -> ApiKeySettings:
        key = checked_key("SCORING_API_KEY", self.SCORING_API_KEY, self.APP_ENV, DEV_API_KEY)
        object.__setattr__(self, "SCORING_API_KEY", key)
        return self

    @property
    def api_key(self) -> str:
        """The API key value (never log it)."""
        assert self.SCORING_API_KEY is not None
        return self.SCORING_API_KEY.get_secret_value()


class ScoringClientSettings(ConnectionSettings, ApiKeySettings):
    """Connection settings plus the scoring service and the decision rules, for the parts that
    score and decide (the job, the baselines)."""

    SCORING_URL: str = Field(default="http://localhost:8000", description="Base URL of the scoring service.")
    RULES_FILE: str = Field(
        default="",
        description="The decision rules (fraud_core/rules); empty: the packaged default.toml. Checked at "
        "start; the job reloads the file when it changes.",
    )

    @field_validator("RULES_FILE")
    @classmethod
    def _rules_file_valid(cls, value: str) -> str:
        if not value:
            return value
        path = Path(value).resolve()
        try:
            load_rules(path)
        except RulesError as exc:
            raise ValueError(str(exc)) from exc
        return str(path)
