"""The scoring service's one settings class. Field names are the environment variable names."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from fraud_core.settings import ApiKeySettings

# The hard ceiling of the batch route's schema; MAX_BATCH_SIZE may only lower it.
BATCH_SIZE_CEILING = 10_000


class Settings(ApiKeySettings):
    """Settings of ``python -m inference_service``, validated once at start-up.

    ``SCORING_API_KEY`` defaults to the development key only when ``APP_ENV`` is ``local`` or
    ``test``; anywhere else it must be set and must not be the development key.
    """

    SCORING_HOST: str = "127.0.0.1"
    SCORING_PORT: int = Field(default=8000, ge=1, le=65535)
    MODEL_DIR: Path = Path("models")
    SHADOW_MODEL_VERSION: str | None = None
    MAX_BATCH_SIZE: int = Field(default=1000, ge=1, le=BATCH_SIZE_CEILING)
    MAX_BODY_BYTES: int = Field(default=2 * 1024 * 1024, ge=1024)
    RELOAD_POLL_SECONDS: float = Field(default=1.0, gt=0, le=60)
