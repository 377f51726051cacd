"""``python -m console``: serve the analyst console; ``python -m console hash-password``: print the
hash of a password for ``CONSOLE_USERS``.

The flags are generated from :class:`~console.settings.ConsoleSettings` (``--help``): each setting
is a flag named after it (``--console-port`` for ``CONSOLE_PORT``) and falls back to the
environment variable of that name. Secrets (``CONSOLE_SECRET_KEY``, the Kafka and Redis passwords)
come from the environment only. Ctrl-C (SIGINT) or SIGTERM stops it cleanly: the sweeper finishes
its round, Kafka is flushed. Exit codes: 0 stopped, 1 failure, 2 invalid setting.
"""

from __future__ import annotations

import getpass
import logging
import sys
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from console.auth import ANALYST, hash_password
from console.settings import ConsoleSettings
from fraud_core.cli import ENV_NOTE, cli_config, fail, lower_case_flags, parse_settings
from fraud_core.exceptions import FraudPipelineError

HASH_PASSWORD = "hash-password"


class ConsoleCli(ConsoleSettings):
    __doc__ = (
        "The analyst console: the review queue of REVIEW decisions, Confirm fraud / Clear verdicts "
        "(labels on payments.labels, audit on payments.actions, block in Redis), the timeout policy, "
        "and a live strip of pipeline health. Open http://<host>:<port>/ and log in. `python -m "
        f"console {HASH_PASSWORD} --help`: make a CONSOLE_USERS entry. {ENV_NOTE}"
    )

    model_config = cli_config("python -m console", lower_case_flags(ConsoleSettings))


class HashPasswordCli(BaseSettings):
    __doc__ = (
        "Print a CONSOLE_USERS entry (name:pbkdf2 hash) for a password read from stdin, or asked for on a "
        f"terminal. {ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config(
            f"python -m console {HASH_PASSWORD}", {"CONSOLE_USER_NAME": "name", "CONSOLE_USER_ROLE": "role"}
        ),
        frozen=True,
        case_sensitive=True,
    )

    CONSOLE_USER_NAME: str = Field(
        ANALYST,
        min_length=1,
        pattern=r"^[^:\s]+$",
        description="The analyst's name to print before the hash.",
    )
    CONSOLE_USER_ROLE: Literal["analyst", "lead"] = Field(  # console.auth.ROLES
        "analyst", description="analyst, or lead (may confirm any amount)."
    )


def hash_password_main(argv: list[str]) -> int:
    """``hash-password``: read a password (stdin, or asked for) and print ``name:hash``."""
    args = parse_settings(HashPasswordCli, argv)
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
    if not password:
        fail("empty password")
    role = "" if args.CONSOLE_USER_ROLE == ANALYST else f":{args.CONSOLE_USER_ROLE}"
    print(f"{args.CONSOLE_USER_NAME}:{hash_password(password)}{role}")  # noqa: T201 - CLI output
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [HASH_PASSWORD]:
        return hash_password_main(argv[1:])
    settings = parse_settings(ConsoleCli, argv[1:] if argv[:1] == ["serve"] else argv)
    # Imported here: the web stack costs ``hash-password`` most of its second otherwise.
    import uvicorn

    from console.app import create_app

    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.CONSOLE_HOST,
            port=settings.CONSOLE_PORT,
            log_level=settings.LOG_LEVEL.lower(),
            access_log=False,
        )
    except FraudPipelineError as exc:
        fail(str(exc), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
