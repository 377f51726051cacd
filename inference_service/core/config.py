"""The scoring service's one settings class. Field names are the environment variable names."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from fraud_core.settings import DEV_API_KEY, LOCAL_MODES, ApiKeySettings, checked_key

# Only valid when APP_ENV is local or test, like the development scoring key.
DEV_ADMIN_API_KEY = "dev-local-admin-key-not-secret"

# The hard ceiling of the batch route's schema; MAX_BATCH_SIZE may only lower it.
BATCH_SIZE_CEILING = 10_000


class Settings(ApiKeySettings):
    """Settings of ``python -m inference_service``, validated once at start-up.

    ``SCORING_API_KEY`` (the scoring routes and the model card) and ``ADMIN_API_KEY`` (the admin
    routes) default to development keys only when ``APP_ENV`` is ``local`` or ``test``; anywhere
    else both must be set, at least 32 characters, and different from each other. Outside local
    mode the interactive docs and the OpenAPI document are not served.

    ``SCORING_API_KEY_NEXT`` is a second scoring key accepted alongside the first while a rotation
    is under way (see the README's "Rotating the scoring key"): clients keep the single variable
    ``SCORING_API_KEY``, and the service accepts both, so clients can move one by one and no
    request is refused in between.
    """

    ADMIN_API_KEY: SecretStr | None = None
    SCORING_API_KEY_NEXT: SecretStr | None = Field(
        default=None,
        description="A second accepted X-API-Key during a rotation (unset outside one); same rules as "
        "SCORING_API_KEY.",
    )
    # Requests of one key being served at once; one more gets 429 with Retry-After. The stream
    # job keeps a handful in flight per subtask, so the default leaves ample room for it while
    # a runaway client cannot queue unbounded work.
    MAX_IN_FLIGHT_PER_KEY: int = Field(default=64, ge=1, le=10_000)
    ADMIN_MAX_IN_FLIGHT: int = Field(default=1, ge=1, le=100)
    RETRY_AFTER_S: int = Field(default=1, ge=1, le=3600)

    SCORING_HOST: str = "127.0.0.1"
    SCORING_PORT: int = Field(default=8000, ge=1, le=65535)
    MODEL_DIR: Path = Path("models")
    SHADOW_MODEL_VERSION: str | None = None
    MAX_BATCH_SIZE: int = Field(default=1000, ge=1, le=BATCH_SIZE_CEILING)
    MAX_BODY_BYTES: int = Field(default=2 * 1024 * 1024, ge=1024)
    RELOAD_POLL_SECONDS: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _admin_key(self) -> Settings:
        key = checked_key("ADMIN_API_KEY", self.ADMIN_API_KEY, self.APP_ENV, DEV_ADMIN_API_KEY)
        if key.get_secret_value() == self.api_key:
            raise ValueError(
                "ADMIN_API_KEY must differ from SCORING_API_KEY (the scoring key must not reload models)"
            )
        object.__setattr__(self, "ADMIN_API_KEY", key)
        nxt = self.SCORING_API_KEY_NEXT
        if nxt is not None and not nxt.get_secret_value():
            object.__setattr__(self, "SCORING_API_KEY_NEXT", None)  # an empty variable means unset
        elif nxt is not None:
            checked_key("SCORING_API_KEY_NEXT", nxt, self.APP_ENV, DEV_API_KEY)
            if nxt.get_secret_value() == key.get_secret_value():
                raise ValueError(
                    "SCORING_API_KEY_NEXT must differ from ADMIN_API_KEY (a scoring key must not reload models)"
                )
        return self

    @property
    def scoring_keys(self) -> tuple[str, ...]:
        """Every accepted scoring key: the current one, then the next one if set (never log them)."""
        keys = [self.api_key]
        if self.SCORING_API_KEY_NEXT is not None and self.SCORING_API_KEY_NEXT.get_secret_value() not in keys:
            keys.append(self.SCORING_API_KEY_NEXT.get_secret_value())
        return tuple(keys)

    @property
    def admin_key(self) -> str:
        """The admin key value (never log it)."""
        assert self.ADMIN_API_KEY is not None
        return self.ADMIN_API_KEY.get_secret_value()

    @property
    def docs_enabled(self) -> bool:
        """``/docs``, ``/redoc`` and ``/openapi.json`` are served in local mode only."""
        return self.APP_ENV in LOCAL_MODES
