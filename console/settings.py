"""Settings of the analyst console (``python -m console``). Field names are the environment
variable names; :mod:`console.__main__` generates a CLI flag for each (``--help``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from console.auth import LEAD, User, hash_password, parse_users
from fraud_core.clock import DAY_S
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import ACTIONS, LABELS

# Development values, accepted only when APP_ENV is local or test (refused anywhere else).
DEV_SECRET_KEY = "dev-console-secret-not-secret"
DEV_ANALYST = "analyst"
DEV_ANALYST_PASSWORD = "analyst-local-not-secret"
DEFAULT_METRICS_URLS = (
    "http://127.0.0.1:9249/metrics,http://127.0.0.1:8000/metrics,http://127.0.0.1:9102/metrics"
)


class ConsoleSettings(ConnectionSettings):
    """Where the console listens, who may log in, and the review policy."""

    CONSOLE_HOST: str = Field("127.0.0.1", min_length=1, description="Interface the console listens on.")
    CONSOLE_PORT: int = Field(8090, ge=1, le=65535, description="Port of the console (HTML and /metrics).")
    CONSOLE_USERS: str = Field(
        "",
        description="Analysts: name:pbkdf2 hash entries separated by commas, or @<file> with one per "
        "line (python -m console hash-password makes a hash). Empty in local/test mode: one "
        f"development analyst {DEV_ANALYST!r}.",
    )
    CONSOLE_SECRET_KEY: SecretStr | None = Field(
        None, description="Key signing sessions and CSRF tokens; required outside local/test mode."
    )
    SESSION_TTL_S: int = Field(8 * 3600, gt=0, description="How long a log-in lasts.")
    LOGIN_USER_FREE_FAILURES: int = Field(
        3, ge=1, description="Failed log-ins of one user name before each further one must wait."
    )
    LOGIN_ADDRESS_FREE_FAILURES: int = Field(
        20, ge=1, description="Failed log-ins from one client address before each further one must wait."
    )
    LOGIN_BASE_WAIT_S: float = Field(
        2.0, gt=0, description="The first wait after the free failures; it doubles with each failure."
    )
    LOGIN_MAX_WAIT_S: float = Field(900.0, gt=0, description="The longest wait between failed log-ins.")
    LOGIN_WINDOW_S: int = Field(
        3600, gt=0, description="How long failed log-ins are remembered (since the last one)."
    )
    CONFIRM_LEAD_ABOVE_EUR: float = Field(
        1000.0, ge=0, description="Confirming fraud on a case above this amount (EUR) needs a lead."
    )
    REVIEW_TIMEOUT_S: float = Field(
        900.0, gt=0, description="A case not resolved this long after opening is resolved by the policy."
    )
    POLICY_BLOCK_ABOVE_EUR: float = Field(
        500.0,
        ge=0,
        description="The policy blocks a timed-out case above this amount (EUR); approves otherwise.",
    )
    SWEEP_INTERVAL_S: float = Field(
        5.0, gt=0, description="How often timed-out cases and unfinished verdicts are looked for."
    )
    SWEEP_STALE_S: float = Field(
        120.0,
        gt=0,
        description="/healthz fails when the sweeper's last good sweep is older than this (or it died).",
    )
    CASE_RETENTION_S: int = Field(30 * DAY_S, gt=0, description="How long a resolved case stays readable.")
    BLOCK_TTL_S: int = Field(7 * DAY_S, gt=0, description="How long a confirmed card stays blocklisted.")
    IDEMPOTENCY_TTL_S: int = Field(
        7 * DAY_S, gt=0, description="How long a verdict's effects are remembered."
    )
    LABELS_TOPIC: str = Field(LABELS, min_length=1, description="Where verdicts go as labels.")
    ACTIONS_TOPIC: str = Field(ACTIONS, min_length=1, description="Where verdicts are audited.")
    HEALTH_METRICS_URLS: str = Field(
        DEFAULT_METRICS_URLS,
        description="Prometheus endpoints of the job, scoring service and consumers, comma separated.",
    )
    HEALTH_INTERVAL_S: float = Field(2.0, gt=0, description="How often the health strip scrapes them.")
    MODEL_DIR: Path = Field(
        Path("models"), description="Model registry folder: the comparisons page reads its comparisons/."
    )

    @field_validator("CONSOLE_USERS")
    @classmethod
    def _users_valid(cls, value: str) -> str:
        parse_users(cls._users_text(value))
        return value

    @staticmethod
    def _users_text(value: str) -> str:
        if value.startswith("@"):
            path = Path(value[1:])
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"CONSOLE_USERS file {str(path)!r} cannot be read: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _secrets_outside_local(self) -> ConsoleSettings:
        key = self.CONSOLE_SECRET_KEY.get_secret_value() if self.CONSOLE_SECRET_KEY else None
        if self.APP_ENV in ("local", "test"):
            if key is None:
                object.__setattr__(self, "CONSOLE_SECRET_KEY", SecretStr(DEV_SECRET_KEY))
            return self
        if key is None or key == DEV_SECRET_KEY or len(key) < 32:
            raise ValueError(
                f"CONSOLE_SECRET_KEY must be set to a random value of 32+ characters when APP_ENV={self.APP_ENV}"
            )
        if not self.CONSOLE_USERS:
            raise ValueError(f"CONSOLE_USERS must list the analysts when APP_ENV={self.APP_ENV}")
        return self

    @property
    def secret_key(self) -> bytes:
        """The session key (never log it)."""
        assert self.CONSOLE_SECRET_KEY is not None
        return self.CONSOLE_SECRET_KEY.get_secret_value().encode()

    def users(self) -> dict[str, User]:
        """Name -> user; the development analyst (a lead, so a demo can confirm any case) when none
        is configured locally."""
        users = parse_users(self._users_text(self.CONSOLE_USERS))
        if not users and self.APP_ENV in ("local", "test"):
            users = {DEV_ANALYST: User(hash_password(DEV_ANALYST_PASSWORD), LEAD)}
        return users

    @property
    def metrics_urls(self) -> list[str]:
        return [u.strip() for u in self.HEALTH_METRICS_URLS.split(",") if u.strip()]
