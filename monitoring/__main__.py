"""``python -m monitoring`` (``make monitor``): the drift monitor in the foreground.

Consumes the decision topics with a group of its own, compares a sliding window of each model
version's decisions with the reference distributions in its model card, and serves the result
as Prometheus gauges (``fraud_feature_psi``, ``fraud_score_psi``, Jensen-Shannon distances, flag
rate, missing-profile rate). The API key comes only from SCORING_API_KEY in the environment.
Every flag falls back to an environment variable (shown in
``--help``), which falls back to the local default. SIGINT/SIGTERM stop it cleanly. Exit codes:
0 stopped, 1 failure (a fatal Kafka error), 2 invalid setting.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Literal, NoReturn, get_args, get_origin

import pydantic

from fraud_core.exceptions import FraudPipelineError
from monitoring.monitor import DriftMonitor
from monitoring.settings import MonitorSettings

log = logging.getLogger("monitoring")

# The shared settings carry no description of their own.
_HELP = {
    "APP_ENV": "Where this runs (local and test accept the development API key).",
    "LOG_LEVEL": "Log level.",
    "KAFKA_BOOTSTRAP_SERVERS": "Kafka bootstrap servers.",
    "SCHEMA_REGISTRY_URL": "Confluent-compatible schema registry base URL.",
    "KAFKA_SECURITY_PROTOCOL": "Kafka security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).",
    "KAFKA_SASL_MECHANISM": "Kafka SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).",
    "KAFKA_SASL_USERNAME": "Kafka SASL user.",
    "KAFKA_SSL_CA_FILE": "PEM file of the CA that signed the brokers' certificates.",
}
# Not flags: Redis is unused; a secret on the command line would show in the process list.
_SKIP = {"REDIS_URL", "REDIS_USERNAME", "REDIS_PASSWORD", "KAFKA_SASL_PASSWORD", "SCORING_API_KEY"}


def _flag(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """One flag per setting, each naming its environment variable and default."""
    p = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__.split("\n\n")[1])
    for name, info in MonitorSettings.model_fields.items():
        if name in _SKIP:
            continue
        default = "unset" if info.default is None else info.default
        text = info.description or _HELP[name]
        kwargs: dict[str, object] = {"help": f"{text} [env {name}; default {default}]", "dest": name}
        kind = info.annotation
        if kind in (int, float):
            kwargs["type"] = kind
        elif kind is Path:
            kwargs["type"] = Path
        elif get_origin(kind) is Literal:
            kwargs["choices"] = list(get_args(kind))
        p.add_argument(_flag(name), **kwargs)  # type: ignore[arg-type]
    return p


def _fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - CLI output
    raise SystemExit(code)


def build_settings(args: argparse.Namespace) -> MonitorSettings:
    """Settings from the environment, overridden by the flags given; exits 2 naming a bad setting."""
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return MonitorSettings(**overrides)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{_flag(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        _fail(problems, 2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = build_settings(args)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        DriftMonitor(settings).run(stop)
    except FraudPipelineError as exc:
        _fail(str(exc), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
