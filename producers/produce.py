"""``python -m producers.produce``: send simulated (or recorded) payments to Kafka.

Every flag falls back to an environment variable (shown in ``--help``), which falls back to the
local default. Exit codes: 0 done, 1 failure (including undelivered records), 2 invalid setting,
130 interrupted (after flushing what was sent and printing the summary).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from itertools import takewhile
from pathlib import Path
from types import FrameType

from pydantic import Field
from pydantic_settings import CliToggleFlag

from fraud_core.cli import ENV_NOTE, cli_config, fail, parse_settings
from fraud_core.exceptions import FraudPipelineError
from fraud_core.simulator import SimConfig, SimEvent, Simulator
from producers.avro_file import read_config, read_stream, write_stream
from producers.profiles import seed_profiles
from producers.publish import ProduceSummary, produce_events
from producers.settings import ProducerSettings

__all__ = ["ProduceCli", "ProduceSummary", "main", "produce_events"]

log = logging.getLogger("producers.produce")

DEFAULT_COUNT = 1000


class ProduceCli(ProducerSettings):
    __doc__ = (
        "Produce simulated card payments (Avro, Confluent framing) to Kafka, with labels. When neither "
        f"--count nor --duration is given, {DEFAULT_COUNT} events are sent. Examples: --count 10000 "
        "--rate 0 | --duration 60 --rate 500 --seed-profiles | --count 100000 --avro-file "
        f"data/train.avro --no-kafka | --replay-file data/train.avro --speed 10. {ENV_NOTE}"
    )

    model_config = cli_config(
        "python -m producers.produce",
        {
            "KAFKA_BOOTSTRAP_SERVERS": "bootstrap-servers",
            "SCHEMA_REGISTRY_URL": "registry-url",
            "REDIS_URL": "redis-url",
            "PRODUCER_TOPIC": "topic",
            "PRODUCER_LABELS_TOPIC": "labels-topic",
            "PRODUCER_RATE": "rate",
            "PRODUCER_COUNT": "count",
            "PRODUCER_DURATION_S": "duration",
            "PRODUCER_SEED": "seed",
            "PRODUCER_USERS": "users",
            "PRODUCER_ID_SALT": "id-salt",
            "PRODUCER_LABEL_DELAY_S": "label-delay-s",
            "PRODUCER_SPEED": "speed",
            "PRODUCER_LINGER_MS": "linger-ms",
            "PRODUCER_DRIFT_AT": "drift-at",
            "LOG_LEVEL": "log-level",
        },
    )

    avro_file: Path | None = Field(
        None, description="Also write the stream to this Avro file (+ .labels.avro)."
    )
    replay_file: Path | None = Field(
        None, description="Send the events of this Avro file instead of simulating."
    )
    seed_profiles: CliToggleFlag[bool] = Field(
        False, description="Write the users' initial profiles to Redis (profile:<user_id>)."
    )
    no_kafka: CliToggleFlag[bool] = Field(
        False, description="Only write --avro-file; do not connect to Kafka."
    )
    no_progress: CliToggleFlag[bool] = Field(False, description="No progress bar.")


def _events(settings: ProduceCli) -> tuple[Iterator[SimEvent], SimConfig | None]:
    if settings.replay_file:
        return read_stream(settings.replay_file), read_config(settings.replay_file)
    config = SimConfig(
        seed=settings.PRODUCER_SEED,
        n_users=settings.PRODUCER_USERS,
        drift_at=settings.PRODUCER_DRIFT_AT,
        id_salt=settings.PRODUCER_ID_SALT,
    )
    count = settings.PRODUCER_COUNT
    if count is None and settings.PRODUCER_DURATION_S is None:
        count = DEFAULT_COUNT
    return Simulator(config).events(count=count), config


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(ProduceCli, argv)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one line per registry request otherwise
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if settings.replay_file and not settings.replay_file.is_file():
        fail(f"--replay-file {settings.replay_file} does not exist")
    if settings.replay_file and settings.PRODUCER_DRIFT_AT is not None:
        fail("--drift-at shifts the simulated population; a --replay-file is sent as recorded")
    if settings.no_kafka and not settings.avro_file:
        fail("--no-kafka needs --avro-file (there is nowhere else to write)")
    if settings.no_kafka and settings.PRODUCER_DURATION_S is not None:
        fail("--no-kafka writes as fast as it can: give --count instead of --duration")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.warning("stopping after a flush (signal %d); repeat it to stop at once", signum)
        signal.signal(signum, signal.SIG_DFL)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a supervisor's stop: flush and summarise
        signal.signal(sig, request_stop)
    events, config = _events(settings)
    try:
        if settings.seed_profiles:
            if config is None:
                fail(
                    f"--seed-profiles: {settings.replay_file} records no simulator config to rebuild profiles"
                )
            n = seed_profiles(settings.redis_connect_url, Simulator(config).profiles())
            log.info("seeded %d profiles into Redis at %s", n, settings.REDIS_URL)
        if settings.no_kafka and settings.avro_file:  # --no-kafka without a file was refused above
            n = write_stream(settings.avro_file, takewhile(lambda _: not stop.is_set(), events), config)
            print(f"wrote {n} events to {settings.avro_file} (+ labels)")  # noqa: T201 - CLI output
            return 130 if stop.is_set() else 0
        summary = produce_events(
            settings,
            events,
            settings.PRODUCER_RATE,
            label_delay_s=settings.PRODUCER_LABEL_DELAY_S,
            speed=settings.PRODUCER_SPEED if settings.replay_file else None,
            max_seconds=settings.PRODUCER_DURATION_S,
            avro_file=settings.avro_file,
            sim_config=config,
            progress=not settings.no_progress,
            stop=stop,
            total=None
            if settings.replay_file or settings.PRODUCER_DURATION_S
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
