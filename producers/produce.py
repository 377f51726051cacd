"""``python -m producers.produce``: send simulated (or recorded) payments to Kafka.

Every flag falls back to an environment variable (shown in ``--help``), which falls back to the
local default. Exit codes: 0 done, 1 failure (including undelivered records), 2 invalid setting,
130 interrupted (after flushing what was sent and printing the summary).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from itertools import takewhile
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import pydantic

from fraud_core.exceptions import FraudPipelineError
from producers.avro_file import read_config, read_stream, write_stream
from producers.profiles import seed_profiles
from producers.publish import ProduceSummary, produce_events
from producers.settings import ProducerSettings
from producers.simulator import SimConfig, SimEvent, Simulator

__all__ = ["ProduceSummary", "main", "produce_events"]

log = logging.getLogger("producers.produce")

DEFAULT_COUNT = 1000

# CLI flag -> settings field (= environment variable).
FLAGS: dict[str, str] = {
    "--bootstrap-servers": "KAFKA_BOOTSTRAP_SERVERS",
    "--registry-url": "SCHEMA_REGISTRY_URL",
    "--redis-url": "REDIS_URL",
    "--topic": "PRODUCER_TOPIC",
    "--labels-topic": "PRODUCER_LABELS_TOPIC",
    "--rate": "PRODUCER_RATE",
    "--count": "PRODUCER_COUNT",
    "--duration": "PRODUCER_DURATION_S",
    "--seed": "PRODUCER_SEED",
    "--users": "PRODUCER_USERS",
    "--label-delay-s": "PRODUCER_LABEL_DELAY_S",
    "--speed": "PRODUCER_SPEED",
    "--linger-ms": "PRODUCER_LINGER_MS",
    "--drift-at": "PRODUCER_DRIFT_AT",
    "--log-level": "LOG_LEVEL",
}
_FIELD_TO_FLAG = {v: k for k, v in FLAGS.items()}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    fields = ProducerSettings.model_fields

    def helptext(flag: str, text: str) -> str:
        name = FLAGS[flag]
        default = fields[name].default
        shown = "none" if default is None else ("''" if default == "" else default)
        return f"{text} [env {name}; default {shown}]"

    p = argparse.ArgumentParser(
        prog="python -m producers.produce",
        description="Produce simulated card payments (Avro, Confluent framing) to Kafka, with labels.",
        epilog="Examples: --count 10000 --rate 0 | --duration 60 --rate 500 --seed-profiles | "
        "--count 100000 --avro-file data/train.avro --no-kafka | --replay-file data/train.avro --speed 10",
    )
    conn = p.add_argument_group("connections")
    conn.add_argument("--bootstrap-servers", help=helptext("--bootstrap-servers", "Kafka bootstrap servers."))
    conn.add_argument(
        "--registry-url", help=helptext("--registry-url", "Confluent-compatible registry base URL.")
    )
    conn.add_argument("--redis-url", help=helptext("--redis-url", "Redis URL for --seed-profiles."))
    what = p.add_argument_group("stream")
    what.add_argument("--topic", help=helptext("--topic", "Topic of the payment events."))
    what.add_argument(
        "--labels-topic", help=helptext("--labels-topic", "Topic of the labels; '' sends none.")
    )
    what.add_argument(
        "--rate", type=float, help=helptext("--rate", "Events/s (wall clock); 0 = as fast as possible.")
    )
    size = what.add_mutually_exclusive_group()
    size.add_argument(
        "--count", type=int, help=helptext("--count", f"Events to send (default {DEFAULT_COUNT}).")
    )
    size.add_argument(
        "--duration", type=float, help=helptext("--duration", "Seconds (wall clock) to send for.")
    )
    what.add_argument("--seed", type=int, help=helptext("--seed", "Simulator seed."))
    what.add_argument("--users", type=int, help=helptext("--users", "Number of simulated users."))
    what.add_argument(
        "--label-delay-s",
        type=float,
        help=helptext("--label-delay-s", "Chargeback delay before labels are sent."),
    )
    what.add_argument(
        "--drift-at",
        type=int,
        metavar="N",
        help=helptext(
            "--drift-at",
            "Shift the population after N events: from then on most legitimate payments come from "
            "new countries, for larger amounts, at riskier merchants (the drift scenario).",
        ),
    )
    what.add_argument(
        "--linger-ms", type=int, help=helptext("--linger-ms", "Producer batching delay (linger.ms).")
    )
    files = p.add_argument_group("files and profiles")
    files.add_argument(
        "--avro-file", type=Path, help="Also write the stream to this Avro file (+ .labels.avro)."
    )
    files.add_argument(
        "--replay-file", type=Path, help="Send the events of this Avro file instead of simulating."
    )
    files.add_argument("--speed", type=float, help=helptext("--speed", "Replay pace: 1 = original, 0 = max."))
    files.add_argument(
        "--seed-profiles",
        action="store_true",
        help="Write the users' initial profiles to Redis (profile:<user_id>).",
    )
    files.add_argument(
        "--no-kafka", action="store_true", help="Only write --avro-file; do not connect to Kafka."
    )
    out = p.add_argument_group("output")
    out.add_argument("--no-progress", action="store_true", help="No progress bar.")
    out.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help=helptext("--log-level", "Log level."),
    )
    return p


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - CLI output
    raise SystemExit(code)


def _explain(err: Any, from_cli: set[str]) -> str:
    """One pydantic error as 'SETTING must be ..., got VALUE', naming the flag when it came from one."""
    if not err.get("loc"):
        message = str(err["msg"]).removeprefix("Value error, ")
        for field in from_cli:
            message = message.replace(field, _FIELD_TO_FLAG[field])
        return message
    field = str(err["loc"][0])
    name = _FIELD_TO_FLAG[field] if field in from_cli else field
    ctx = err.get("ctx") or {}
    rule = {
        "greater_than_equal": f"must be >= {_show(ctx.get('ge'))}",
        "greater_than": f"must be > {_show(ctx.get('gt'))}",
        "less_than_equal": f"must be <= {_show(ctx.get('le'))}",
        "string_too_short": "must not be empty",
    }.get(err["type"], str(err["msg"]).lower())
    return f"{name} {rule}, got {_show(err.get('input'))}"


def _show(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value}"


def build_settings(args: argparse.Namespace) -> ProducerSettings:
    """Settings from the environment, overridden by the flags given; exits 2 naming a bad setting."""
    overrides = {name: getattr(args, _dest(flag)) for flag, name in FLAGS.items()}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ProducerSettings(**overrides)
    except pydantic.ValidationError as exc:
        _fail("; ".join(_explain(e, set(overrides)) for e in exc.errors()))


def _events(
    settings: ProducerSettings, args: argparse.Namespace
) -> tuple[Iterator[SimEvent], SimConfig | None]:
    if args.replay_file:
        return read_stream(args.replay_file), read_config(args.replay_file)
    config = SimConfig(
        seed=settings.PRODUCER_SEED, n_users=settings.PRODUCER_USERS, drift_at=settings.PRODUCER_DRIFT_AT
    )
    count = settings.PRODUCER_COUNT
    if count is None and settings.PRODUCER_DURATION_S is None:
        count = DEFAULT_COUNT
    return Simulator(config).events(count=count), config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = build_settings(args)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one line per registry request otherwise
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.replay_file and not args.replay_file.is_file():
        _fail(f"--replay-file {args.replay_file} does not exist")
    if args.replay_file and settings.PRODUCER_DRIFT_AT is not None:
        _fail("--drift-at shifts the simulated population; a --replay-file is sent as recorded")
    if args.no_kafka and not args.avro_file:
        _fail("--no-kafka needs --avro-file (there is nowhere else to write)")
    if args.no_kafka and settings.PRODUCER_DURATION_S is not None:
        _fail("--no-kafka writes as fast as it can: give --count instead of --duration")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.warning("stopping after a flush (signal %d); repeat it to stop at once", signum)
        signal.signal(signum, signal.SIG_DFL)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a supervisor's stop: flush and summarise
        signal.signal(sig, request_stop)
    events, config = _events(settings, args)
    try:
        if args.seed_profiles:
            if config is None:
                _fail(f"--seed-profiles: {args.replay_file} records no simulator config to rebuild profiles")
            n = seed_profiles(settings.redis_connect_url, Simulator(config).profiles())
            log.info("seeded %d profiles into Redis at %s", n, settings.REDIS_URL)
        if args.no_kafka:
            n = write_stream(args.avro_file, takewhile(lambda _: not stop.is_set(), events), config)
            print(f"wrote {n} events to {args.avro_file} (+ labels)")  # noqa: T201 - CLI output
            return 130 if stop.is_set() else 0
        summary = produce_events(
            settings,
            events,
            settings.PRODUCER_RATE,
            label_delay_s=settings.PRODUCER_LABEL_DELAY_S,
            speed=settings.PRODUCER_SPEED if args.replay_file else None,
            max_seconds=settings.PRODUCER_DURATION_S,
            avro_file=args.avro_file,
            sim_config=config,
            progress=not args.no_progress,
            stop=stop,
            total=None
            if args.replay_file or settings.PRODUCER_DURATION_S
            else settings.PRODUCER_COUNT or DEFAULT_COUNT,
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201 - CLI output
        return 130
    except FraudPipelineError as exc:
        log.error("%s", exc)
        return 1
    print(summary.render())  # noqa: T201 - CLI output
    if summary.interrupted:
        return 130
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
