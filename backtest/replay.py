"""The replay itself: the live job (``flink_jobs.scoring_job``, unchanged) in bounded mode over the
resolved offsets, writing to topics owned by the run, and reading those topics back.

Only the job's settings differ from live: input offsets, output topics, consumer group, Redis
database, scoring URL, and longer timeouts (a backtest runs at full speed on a busy machine and
must not fall back to the degraded rules because the service answered in 600 ms instead of 500).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from tqdm import tqdm

import schemas
from backtest.exceptions import BacktestError
from backtest.ranges import ReplayRange
from deploy.local.bootstrap import create_topics
from deploy.local.processes import start_job
from flink_jobs.settings import JobSettings
from fraud_core.cli import child_env
from fraud_core.connections import KafkaConnection, as_connection
from fraud_core.exceptions import ReadTimeout
from fraud_core.kafka.readers import RangeRecord, read_range
from fraud_core.kafka_io import consumer, decoder, partition_bounds
from fraud_core.registry import RegistryClient
from fraud_core.topics import COMPATIBILITY, TopicSpec

log = logging.getLogger(__name__)

# Settings of the job that differ from live (see the module docstring).
JOB_OVERRIDES: dict[str, object] = {
    "SCORING_TIMEOUT_MS": 10_000,
    "REDIS_TIMEOUT_MS": 5000,
    "DELIVERY": "at-least-once",
}
_RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class RunTopics:
    """The topics one model's replay writes to: ``backtest.<run_id>.<model>.{flagged,approved,dlq}``."""

    flagged: str
    approved: str
    dlq: str

    @classmethod
    def named(cls, run_id: str, slug: str) -> RunTopics:
        base = f"backtest.{run_id}.{slug}"
        return cls(f"{base}.flagged", f"{base}.approved", f"{base}.dlq")

    @property
    def all(self) -> list[str]:
        return [self.flagged, self.approved, self.dlq]


def create_owned_topics(
    bootstrap: str | KafkaConnection, registry_url: str, specs: Iterable[TopicSpec]
) -> None:
    """Create the run's topics and register their value schemas (as ``make up`` does for live)."""
    specs = list(specs)
    create_topics(bootstrap, specs)
    client = RegistryClient(registry_url)
    for spec in specs:
        client.register(spec.subject, schemas.load_text(spec.schema))
        client.set_compatibility(COMPATIBILITY, spec.subject)


def output_specs(topics: RunTopics, partitions: int) -> list[TopicSpec]:
    return [
        TopicSpec(topics.flagged, partitions, _RETENTION_MS, schemas.DECISION),
        TopicSpec(topics.approved, partitions, _RETENTION_MS, schemas.DECISION),
        TopicSpec(topics.dlq, 1, _RETENTION_MS, schemas.DEAD_LETTER),
    ]


def delete_topics(bootstrap: str | KafkaConnection, names: list[str]) -> None:
    """Delete the run's topics (best effort: a failure is logged, the report is already written)."""
    if not names:
        return
    # The client is held until every future is done: a temporary one was freed as soon as the call
    # returned, and its futures could then never complete (confluent-kafka-python issue 1298); a
    # retrain test waited on one for ten minutes.
    admin = AdminClient(as_connection(bootstrap).librdkafka())
    futures = admin.delete_topics(names, operation_timeout=30, request_timeout=60)
    for name, fut in futures.items():
        try:
            fut.result(timeout=90)
        except Exception as exc:  # the admin API raises KafkaException or others; none is fatal here
            log.warning("could not delete backtest topic %s: %s", name, exc)


def read_partitions(
    bootstrap: str | KafkaConnection,
    registry_url: str,
    bounds: Mapping[tuple[str, int], tuple[int, int]],
    keep: Callable[[dict[str, Any]], bool] = lambda _r: True,
    timeout_s: float = 120.0,
    decode: Callable[[bytes | None], dict[str, Any] | None] | None = None,
) -> list[RangeRecord]:
    """Decoded records ``(topic, partition, offset, record)`` of each ``(topic, partition)`` in
    ``[start, end)``, read by a throwaway group that never commits (see :func:`read_range`).
    ``decode`` (default: any registered Avro schema) returns None for a value it refuses.

    Raises:
        BacktestError: the offsets were not all reached within ``timeout_s``.
    """
    c = consumer(bootstrap, f"backtest-reader-{uuid.uuid4().hex[:8]}")
    try:
        return read_range(c, decode or decoder(registry_url), bounds, keep, timeout_s)
    except ReadTimeout as exc:
        raise BacktestError(str(exc)) from exc


def epoch_ms(value: Any) -> int:
    """Epoch ms of a decoded ``timestamp-millis`` field (fastavro gives aware datetimes)."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value or 0)


@dataclass
class ReplayResult:
    """One model's replay: its decisions and dead letters, and how long it took."""

    model_version: str
    topics: RunTopics
    decisions: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    processing_s: float = (
        0.0  # first to last output record (Kafka timestamps): the replay rate without start-up
    )
    replayed: int = 0  # events the job consumed, warm-up included


def run_job(
    replay: ReplayRange,
    topics: RunTopics,
    *,
    bootstrap: str | KafkaConnection,
    registry_url: str,
    redis_url: str,
    scoring_url: str,
    api_key: str,
    group_id: str,
    job_name: str,
    work_dir: Path,
    progress_label: str,
    labels_topic: str | None = None,
    timeout_s: float = 6 * 3600,
) -> tuple[float, Path]:
    """Run the bounded job to completion with a progress bar; returns (wall seconds, log path).

    Raises:
        BacktestError: the job exited non-zero (the message carries the end of its log).
    """
    env = child_env(
        JobSettings,
        # The security settings (KAFKA_SASL_*, REDIS_PASSWORD) reach the job through the inherited environment.
        KAFKA_BOOTSTRAP_SERVERS=as_connection(bootstrap).bootstrap_servers,
        SCHEMA_REGISTRY_URL=registry_url,
        REDIS_URL=redis_url,
        SCORING_URL=scoring_url,
        SCORING_API_KEY=api_key,
        INPUT_TOPIC=replay.topic,
        # The labels of the range's own history (without it the job reads the live payments.labels).
        **({"LABELS_TOPIC": labels_topic} if labels_topic else {}),
        FLAGGED_TOPIC=topics.flagged,
        APPROVED_TOPIC=topics.approved,
        DLQ_TOPIC=topics.dlq,
        GROUP_ID=group_id,
        START_FROM=replay.flink_start(),
        STOP_AT=replay.flink_stop(),
        CHECKPOINT_DIR=str(work_dir / f"checkpoints-{job_name}"),
        METRICS_PORT=0,
        JOB_NAME=job_name,
        **JOB_OVERRIDES,
    )
    log_path = work_dir / f"{job_name}.log"
    total = replay.events + replay.warmup_events
    t0 = time.monotonic()
    job = start_job(env, ["--restore", "none"], log_path)
    try:
        with tqdm(total=total, desc=progress_label, unit="ev", disable=None, leave=True) as bar:
            while job.alive and time.monotonic() - t0 < timeout_s:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    job.proc.wait(timeout=1.0)  # returns as soon as the job exits, not a second later
                done = sum(h - lo for lo, h in partition_bounds(bootstrap, topics.all).values())
                bar.update(max(0, min(done, total) - bar.n))
            if job.alive:
                raise BacktestError(f"job {job_name} still running after {timeout_s:.0f}s; stopped")
            bar.update(max(0, total - bar.n) if job.proc.returncode == 0 else 0)
    finally:
        if job.alive:
            job.stop(timeout_s=10)
    wall = time.monotonic() - t0
    if job.proc.returncode != 0:
        raise BacktestError(
            f"the backtest job exited with {job.proc.returncode}; end of {log_path}:\n{job.tail(40)}"
        )
    return wall, log_path


def collect(
    bootstrap: str | KafkaConnection,
    registry_url: str,
    topics: RunTopics,
    replay: ReplayRange,
    warmup_ids: set[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, float]:
    """(decisions in the range, dead letters in the range, events replayed, processing seconds)."""
    bounds = partition_bounds(bootstrap, topics.all)
    timestamps: list[int] = []
    decisions: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    in_range = {p.partition: (p.start, p.end) for p in replay.partitions}
    replayed = 0
    for topic, _p, _o, record in read_partitions(bootstrap, registry_url, bounds):
        if record is None:
            raise BacktestError(f"undecodable record on the backtest's own topic {topic}")
        replayed += 1
        timestamps.append(epoch_ms(record.get("decided_at") or record.get("failed_at")))
        if topic == topics.dlq:
            start, end = in_range.get(record["source_partition"], (0, 0))
            if start <= record["source_offset"] < end:
                dead.append(record)
        elif record["event_id"] not in warmup_ids:
            decisions.append(record)
    processing = (max(timestamps) - min(timestamps)) / 1000 if timestamps else 0.0
    return decisions, dead, replayed, processing


def warmup_event_ids(bootstrap: str | KafkaConnection, registry_url: str, replay: ReplayRange) -> set[str]:
    """The event ids of the warm-up records (replayed for state, not evaluated)."""
    bounds = {(replay.topic, p.partition): (p.warmup_start, p.start) for p in replay.partitions}
    return {
        str(record["event_id"])
        for _t, _p, _o, record in read_partitions(bootstrap, registry_url, bounds)
        if record is not None and "event_id" in record
    }
