"""``python -m console``: serve the analyst console; ``python -m console hash-password``: print the
hash of a password for ``CONSOLE_USERS``.

Every setting of :class:`~console.settings.ConsoleSettings` is a flag generated from its field
(``--console-port`` for ``CONSOLE_PORT``) and falls back to the environment variable of that name.
Ctrl-C (SIGINT) or SIGTERM stops it cleanly: the sweeper finishes its round, Kafka is flushed.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import Any, Literal, NoReturn, get_args, get_origin

import pydantic
import uvicorn

from console.app import create_app
from console.auth import hash_password
from console.settings import ConsoleSettings
from fraud_core.exceptions import FraudPipelineError

_TYPES: dict[Any, type] = {int: int, float: float}
_HELP = {
    "APP_ENV": "Deployment environment (development secrets only in local and test).",
    "LOG_LEVEL": "Log level.",
    "KAFKA_BOOTSTRAP_SERVERS": "Kafka bootstrap servers.",
    "SCHEMA_REGISTRY_URL": "Confluent-compatible schema registry base URL.",
    "REDIS_URL": "Redis holding the review cases, the blocklist and the profiles.",
    "REDIS_USERNAME": "Redis ACL user of the console.",
    "KAFKA_SECURITY_PROTOCOL": "Kafka security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).",
    "KAFKA_SASL_MECHANISM": "Kafka SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).",
    "KAFKA_SASL_USERNAME": "Kafka SASL user.",
    "KAFKA_SSL_CA_FILE": "PEM file of the CA that signed the brokers' certificates.",
}
# From the environment only: a flag would show in `ps`.
SECRET_FIELDS = {"CONSOLE_SECRET_KEY", "KAFKA_SASL_PASSWORD", "REDIS_PASSWORD"}


def _flag(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """One flag per setting, each naming its environment variable and default."""
    p = argparse.ArgumentParser(
        prog="python -m console",
        description="The analyst console: the review queue of REVIEW decisions, Confirm fraud / Clear "
        "verdicts (labels on payments.labels, audit on payments.actions, block in Redis), the timeout "
        "policy, and a live strip of pipeline health. Open http://<host>:<port>/ and log in.",
    )
    sub = p.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the console (the default)")
    hasher = sub.add_parser(
        "hash-password", help="print a password hash for CONSOLE_USERS (reads stdin or asks)"
    )
    hasher.add_argument("--name", default="analyst", help="the analyst's name to print before the hash")
    for name, info in ConsoleSettings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        default = "unset" if info.default is None else info.default
        kwargs: dict[str, Any] = {
            "help": f"{info.description or _HELP.get(name, name)} [env {name}; default {default}]"
        }
        if info.annotation in _TYPES:
            kwargs["type"] = _TYPES[info.annotation]
        elif get_origin(info.annotation) is Literal:
            kwargs["choices"] = list(get_args(info.annotation))
        p.add_argument(_flag(name), dest=name, **kwargs)
    return p


def _fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - CLI output
    raise SystemExit(code)


def build_settings(args: argparse.Namespace) -> ConsoleSettings:
    """Settings from the environment, overridden by the flags given; exits 2 naming a bad setting."""
    overrides = {k: v for k, v in vars(args).items() if k in ConsoleSettings.model_fields and v is not None}
    try:
        return ConsoleSettings(**overrides)
    except pydantic.ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()), 2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "hash-password":
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
        if not password:
            _fail("empty password", 2)
        print(f"{args.name}:{hash_password(password)}")  # noqa: T201 - CLI output
        return 0
    settings = build_settings(args)
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
        _fail(str(exc), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
