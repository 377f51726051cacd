"""``python -m actions`` (``make consumers``): run the action consumers in the foreground.

Every flag falls back to an environment variable (shown in ``--help``), which falls back to the
local default. SIGINT/SIGTERM finish the current record, commit and exit 0. Exit codes: 0 stopped,
1 failure (a dependency missing at start, a fatal Kafka error), 2 invalid setting.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Literal, NoReturn, get_args, get_origin

import pydantic

from actions.consumer import ActionConsumer
from actions.settings import ConsumerSettings
from fraud_core.exceptions import FraudPipelineError

log = logging.getLogger("actions")

# CLI flag -> settings field (= environment variable).
FLAGS: dict[str, str] = {
    "--bootstrap-servers": "KAFKA_BOOTSTRAP_SERVERS",
    "--registry-url": "SCHEMA_REGISTRY_URL",
    "--redis-url": "REDIS_URL",
    "--flagged-topic": "FLAGGED_TOPIC",
    "--approved-topic": "APPROVED_TOPIC",
    "--actions-topic": "ACTIONS_TOPIC",
    "--dlq-topic": "DLQ_TOPIC",
    "--group-id": "GROUP_ID",
    "--auto-offset-reset": "AUTO_OFFSET_RESET",
    "--metrics-port": "ACTIONS_METRICS_PORT",
    "--notify-webhook-url": "NOTIFY_WEBHOOK_URL",
    "--notify-timeout-s": "NOTIFY_TIMEOUT_S",
    "--block-ttl-s": "BLOCK_TTL_S",
    "--idempotency-ttl-s": "IDEMPOTENCY_TTL_S",
    "--audit-profile-updates": "AUDIT_PROFILE_UPDATES",
    "--batch-max": "BATCH_MAX",
    "--log-level": "LOG_LEVEL",
}
_TYPES = {int: int, float: float}
# The shared connection settings carry no description of their own.
_HELP = {
    "KAFKA_BOOTSTRAP_SERVERS": "Kafka bootstrap servers.",
    "SCHEMA_REGISTRY_URL": "Confluent-compatible schema registry base URL.",
    "REDIS_URL": "Redis holding profiles, the blocklist and idempotency markers.",
    "LOG_LEVEL": "Log level.",
}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return lowered in ("true", "1", "yes")


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one flag per setting, each documenting its environment variable and default."""
    p = argparse.ArgumentParser(
        prog="python -m actions",
        description="Act on fraud decisions: block flagged cards, notify, raise risk tiers, learn "
        "profiles from approvals, audit every action to the actions topic. Metrics on /metrics.",
    )
    for flag, name in FLAGS.items():
        info = ConsumerSettings.model_fields[name]
        default = info.default
        shown = "unset" if default is None else default
        kind = info.annotation
        text = info.description or _HELP[name]
        kwargs: dict[str, object] = {"help": f"{text} [env {name}; default {shown}]"}
        if kind is bool:
            kwargs |= {"type": _bool, "metavar": "BOOL"}
        elif kind in _TYPES:
            kwargs["type"] = _TYPES[kind]
        elif get_origin(kind) is Literal:
            kwargs["choices"] = list(get_args(kind))
        p.add_argument(flag, **kwargs)  # type: ignore[arg-type]
    return p


def _fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - CLI output
    raise SystemExit(code)


def build_settings(args: argparse.Namespace) -> ConsumerSettings:
    """Settings from the environment, overridden by the flags given; exits 2 naming a bad setting."""
    overrides = {name: getattr(args, _dest(flag)) for flag, name in FLAGS.items()}
    try:
        return ConsumerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(problems, 2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = build_settings(args)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info(
            "%s received: finishing the current record, then committing and closing",
            signal.Signals(signum).name,
        )
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        ActionConsumer(settings).run(stop)
    except FraudPipelineError as exc:
        _fail(str(exc), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
