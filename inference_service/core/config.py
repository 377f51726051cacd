"""The scoring service's one settings class. Field names are the environment variable names."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraud_core.settings import DEV_API_KEY

# The hard ceiling of the batch route's schema; MAX_BATCH_SIZE may only lower it.
BATCH_SIZE_CEILING = 10_000


class Settings(BaseSettings):
    """Settings of ``python -m inference_service``, validated once at start-up.

    ``SCORING_API_KEY`` defaults to the development key only when ``APP_ENV`` is ``local`` or
    ``test``; anywhere else it must be set and must not be the development key.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    APP_ENV: Literal["local", "test", "staging", "production"] = "local"
    SCORING_HOST: str = "127.0.0.1"
    SCORING_PORT: int = Field(default=8000, ge=1, le=65535)
    SCORING_API_KEY: SecretStr | None = None
    MODEL_DIR: Path = Path("models")
    SHADOW_MODEL_VERSION: str | None = None
    MAX_BATCH_SIZE: int = Field(default=1000, ge=1, le=BATCH_SIZE_CEILING)
    MAX_BODY_BYTES: int = Field(default=2 * 1024 * 1024, ge=1024)
    RELOAD_POLL_SECONDS: float = Field(default=1.0, gt=0, le=60)
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _api_key_required_outside_local(self) -> Settings:
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
