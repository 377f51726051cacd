"""Settings shared by every deployable. Each entrypoint builds its own settings class on these;
library code receives values as arguments and never reads the environment itself. Field names
are the environment variable names (see CONTRACT.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraud_core.rules import RulesError, load_rules

# Only valid when APP_ENV is local or test; refused anywhere else.
DEV_API_KEY = "dev-local-key-not-secret"


class AppSettings(BaseSettings):
    """What every deployable has: where it runs and how loud it logs."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    APP_ENV: Literal["local", "test", "staging", "production"] = Field(
        default="local",
        description="Where this runs; outside local and test, secrets have no development default.",
    )
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")


class ConnectionSettings(AppSettings):
    """Where the shared services are. Defaults point at the local stack of ``make up``."""

    KAFKA_BOOTSTRAP_SERVERS: str = Field(default="localhost:9092", description="Kafka bootstrap servers.")
    SCHEMA_REGISTRY_URL: str = Field(
        default="http://localhost:8081/apis/ccompat/v7",
        description="Confluent-compatible schema registry base URL.",
    )
    REDIS_URL: str = Field(
        default="redis://localhost:6379/0", description="Redis: profiles, blocklist, idempotency markers."
    )


class ApiKeySettings(AppSettings):
    """The scoring API key: the development key locally, required (and not that key) elsewhere."""

    SCORING_API_KEY: SecretStr | None = Field(
        default=None, description="X-API-Key of the scoring service; defaults to the development key locally."
    )

    @model_validator(mode="after")
    def _api_key_required_outside_local(self) -> ApiKeySettings:
        key = self.SCORING_API_KEY.get_secret_value() if self.SCORING_API_KEY else None
        if self.APP_ENV in ("local", "test"):
            if key is None:
                object.__setattr__(self, "SCORING_API_KEY", SecretStr(DEV_API_KEY))
        elif key is None or key == DEV_API_KEY:
            raise ValueError(
                f"SCORING_API_KEY must be set (and not the development key) when APP_ENV={self.APP_ENV}"
            )
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
