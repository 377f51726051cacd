"""End-to-end benchmark: the pipeline (both delivery modes, at parallelism 2 in the mini-cluster and
on a standalone cluster of two TaskManagers) against the naive baseline and the batched consumer, on
the same events and model, over a ladder of offered loads, in one run (``make bench``). First it
measures the cost of each stage and the in-process limit (bench/stages.py), so every system is also
shown as a fraction of what this Python code can do.

Fair and repeatable (issue 25; definitions in docs/INTERFACES.md, arithmetic in bench/ladder.py):
- every system scores through the job's client code and encodes decisions with the job's options
  (bench/baselines.py);
- the load generator is open loop: event i is due at start + i / rate, its Kafka timestamp is that
  scheduled time, and latency = the time this benchmark's consumer receives its decision minus the
  scheduled time, so a generator that falls behind shows as latency (``send_lag_ms`` says by how much);
- each load step runs ``--trials`` times; a step's figures are the medians of its trials, with
  their min and max under ``spread`` and every trial under ``trial_runs``;
- a step is sustained under the rule of its delivery mode (``sustained_rule`` in the JSON):
  median achieved >= 95 % of offered, nothing lost in any trial, median p99 <= 500 ms; under
  exactly-once p99 <= the checkpoint interval + 500 ms and nothing duplicated in any trial;
- each system climbs the ladder until a step is not sustained, then bisects between the last
  sustained and the first failed load until they are within ``--bisect-tolerance`` (10 %) of each
  other or ``--bisect-steps`` extra loads were tried; ``max_sustained_eps`` is the bisected figure.

Achieved throughput of a trial = decided events / (last decision received - first scheduled send -
the smallest latency seen). Writes bench/results/latest.json and latest.png, and prints a summary
table with ratios.

Before its first measured step each system is warmed up, unmeasured: 200 events until all are
decided, then --warmup seconds at the first load (the JVM's JIT, the first checkpoint, connection
pools and the model's first calls). Without it the first step measures the start-up: on a slow day
consecutive 100 ev/s steps of the pipeline gave p99 818, 716, 534 and 153 ms.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import matplotlib
from confluent_kafka import Producer
from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, CliToggleFlag, SettingsConfigDict
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import schemas
from bench.ladder import (
    SUSTAINED_FRACTION,
    SUSTAINED_P99_MS,
    Ceiling,
    SustainedRule,
    combine_trials,
    find_ceiling,
    rule_for,
    schedule_ms,
    trial_figures,
)
from bench.stages import measure
from deploy.local.bootstrap import create_topics, register_schemas
from deploy.local.cluster import Cluster
from deploy.local.processes import ManagedProcess, ensure_model, spawn, start_job, start_scoring_service
from deploy.local.stack import REPO_ROOT, StackConfig, ensure_stack, free_port
from flink_jobs.settings import JobSettings
from fraud_core.cli import ENV_NOTE, child_env, cli_config, parse_settings
from fraud_core.connections import KafkaConnection, as_connection
from fraud_core.flink_cluster import ClusterConfig, SubmittedJob, submit_job
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.kafka_io import consumer
from fraud_core.registry import RegistryClient
from fraud_core.settings import DEV_API_KEY
from fraud_core.simulator import SimConfig, Simulator
from fraud_core.topics import DAY_MS, TopicSpec
from producers.profiles import seed_profiles


@dataclass(frozen=True)
class System:
    """One system under test: what runs it, with which delivery and parallelism."""

    kind: str  # pipeline, batched-consumer or naive-baseline
    delivery: str
    parallelism: int = 1
    deployment: str = "process"  # pipeline: mini-cluster (one process) or cluster (make cluster)
    decode_in: str = "python"  # pipeline: the job's DECODE_IN (flink_jobs/jvm_decode.py)


SYSTEMS = {
    "pipeline": System("pipeline", "at-least-once", 1, "mini-cluster"),
    "pipeline-eo": System("pipeline", "exactly-once", 1, "mini-cluster"),
    "pipeline-p2": System("pipeline", "at-least-once", 2, "mini-cluster"),
    "pipeline-cluster-p2": System("pipeline", "at-least-once", 2, "cluster"),
    "batched-consumer": System("batched-consumer", "at-least-once"),
    "naive-baseline": System("naive-baseline", "at-least-once"),
    # DECODE_IN=jvm beside "pipeline" (issue 25 §2); on request only: `--systems pipeline,pipeline-jvm-decode`.
    "pipeline-jvm-decode": System("pipeline", "at-least-once", 1, "mini-cluster", "jvm"),
}
# What `make bench` runs unless told otherwise.
DEFAULT_SYSTEMS = [name for name in SYSTEMS if SYSTEMS[name].decode_in == "python"]
DEFAULT_LOADS = "100,250,500,1000,2000,3000,4000,5000,8000"
# How each system reaches the scoring service and encodes its decisions (the JSON's "notes").
SCORING_NOTES = {
    "pipeline": "BatchScorer (fraud_core/scoring_client.py): POST /v1/score/batch, binary body, "
    "RawSocketTransport keep-alive; decisions AvroSerializer(validate=False)",
    "batched-consumer": "the same BatchScorer, binary body, RawSocketTransport keep-alive, the job's "
    "retries; the same ScoringStep, decisions AvroSerializer(validate=False)",
    "naive-baseline": "POST /v1/score per event (the naive design; /v1/score takes JSON only) over the "
    "job's KeepAliveConnection with an orjson body, answers checked by the job's parse_results, the "
    "job's retries and breaker; the same ScoringStep on a batch of one, decisions "
    "AvroSerializer(validate=False)",
}


def leading_string(value: bytes) -> str:
    """The first field of a Confluent-framed Avro record whose first field is a string: the decision
    schema's ``event_id``. The receiver reads only this, so that measuring costs the machine little."""
    length, shift, pos = 0, 0, 5
    while True:
        byte = value[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    length = (length >> 1) ^ -(length & 1)  # zigzag
    return value[pos : pos + length].decode()


@dataclass
class Receiver:
    """Consumes a system's decision topics in the background and timestamps each arrival."""

    stack: StackConfig
    topics: list[str]
    received: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        c = consumer(self.stack.bootstrap, None, **{"fetch.wait.max.ms": 5})
        c.subscribe(self.topics)
        while not self._stop.is_set():
            # poll() returns as soon as one record is there; consume(…, 0) then takes what else
            # has arrived without waiting (a consume timeout would add itself to the latency).
            first = c.poll(0.05)
            if first is None:
                continue
            now = time.time_ns() // 1_000_000
            for msg in [first, *c.consume(500, 0)]:
                if msg.error():
                    continue
                value = msg.value()
                if value is None:
                    continue
                event_id = leading_string(value)
                if event_id in self.received:
                    self.duplicates += 1
                else:
                    self.received[event_id] = now
        c.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Sender:
    """Sends pre-encoded events open loop: event i is due at start + i / rate, and its Kafka
    timestamp is that scheduled time, not the moment it actually went out."""

    def __init__(self, bootstrap: str | KafkaConnection) -> None:
        self.producer = Producer(
            as_connection(bootstrap).librdkafka(**{"enable.idempotence": True, "acks": "all", "linger.ms": 1})
        )
        self.publisher = Publisher(self.producer, drain_s=0.01)

    def send(
        self, topic: str, batch: list[tuple[str, bytes, bytes]], rate: float, bar: tqdm | None
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Send ``batch`` at ``rate``; returns each event's scheduled and actual send time (epoch ms)."""
        scheduled: dict[str, int] = {}
        sent: dict[str, int] = {}
        start = time.monotonic()
        due_ms = schedule_ms(time.time_ns() / 1_000_000, len(batch), rate)
        for i, (event_id, key, value) in enumerate(batch):
            delay = start + i / rate - time.monotonic()
            if delay > 0.002:
                self.publisher.poll(0)
                time.sleep(delay)
            self.publisher.produce(topic, key, value, new_headers(), timestamp_ms=due_ms[i])
            scheduled[event_id] = due_ms[i]
            sent[event_id] = time.time_ns() // 1_000_000
            if bar is not None and i % 200 == 0:
                bar.update(min(200, len(batch) - i))
        self.publisher.flush(30)
        return scheduled, sent


def keeps_up(run: dict[str, Any]) -> bool:
    """Throughput alone: achieved >= 95% of offered and nothing lost, whatever the latency."""
    return bool(run["achieved_eps"] >= SUSTAINED_FRACTION * run["offered_eps"] and run["lost"] == 0)


def make_topics(cfg: StackConfig, prefix: str) -> dict[str, str]:
    names = {
        "in": (schemas.TRANSACTION, 4),
        "flagged": (schemas.DECISION, 4),
        "approved": (schemas.DECISION, 4),
        "dlq": (schemas.DEAD_LETTER, 1),
    }
    specs = [TopicSpec(f"{prefix}.{k}", p, DAY_MS, s) for k, (s, p) in names.items()]
    create_topics(cfg.bootstrap, specs)
    register_schemas(cfg.registry_url, specs)
    return {k: f"{prefix}.{k}" for k in names}


class Running(Protocol):
    """A started system: a process, or a job on the standalone cluster."""

    log_path: Path

    @property
    def alive(self) -> bool: ...

    def tail(self, lines: int = 30) -> str: ...


class ClusterSystem:
    """The job at parallelism 2 on a private standalone cluster (one JobManager and two
    TaskManagers, each a process of its own: ``make cluster``'s :class:`Cluster`, on free ports
    under the benchmark's log folder so it never meets a cluster the user started)."""

    def __init__(self, env: dict[str, str], args: list[str], logs: Path, name: str) -> None:
        config = ClusterConfig(
            state_dir=logs / f"{name}-cluster",
            rest_port=free_port(),
            rpc_port=free_port(),
            metrics_ports="",
        )
        self.cluster = Cluster(config, env={"SCORING_API_KEY": DEV_API_KEY, "APP_ENV": "local"})
        self.log_path = logs / f"{name}.log"
        self.job: SubmittedJob | None = None
        self.cluster.up()
        try:
            job_env = env | {"CHECKPOINT_DIR": config.job_checkpoint_dir(name).as_uri(), "JOB_NAME": name}
            self.job = submit_job(config, job_env, args, self.log_path)
            self.job.wait_running(timeout_s=300)
        except BaseException:
            self.stop()
            raise

    @property
    def alive(self) -> bool:
        return self.job is not None and self.job.state() in (
            "RUNNING",
            "RESTARTING",
            "CREATED",
            "INITIALIZING",
        )

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 60.0) -> None:
        try:
            if self.job is not None:
                self.job.cancel(timeout_s)
        finally:
            self.cluster.down()


def start_system(
    name: str,
    cfg: StackConfig,
    topics: dict[str, str],
    scoring_url: str,
    redis_url: str,
    logs: Path,
    checkpoint_ms: int,
) -> ManagedProcess | ClusterSystem:
    system = SYSTEMS[name]
    env = child_env(
        JobSettings,  # the baselines read the job's settings too
        KAFKA_BOOTSTRAP_SERVERS=cfg.bootstrap,
        SCHEMA_REGISTRY_URL=cfg.registry_url,
        REDIS_URL=redis_url,
        SCORING_URL=scoring_url,
        SCORING_API_KEY=DEV_API_KEY,
        INPUT_TOPIC=topics["in"],
        FLAGGED_TOPIC=topics["flagged"],
        APPROVED_TOPIC=topics["approved"],
        DLQ_TOPIC=topics["dlq"],
        GROUP_ID=f"bench-{uuid.uuid4().hex[:8]}",
        START_FROM="earliest",
        METRICS_PORT=0,
        CHECKPOINT_DIR=str(logs / f"{name}-checkpoints"),
        # Exactly-once decisions wait for a checkpoint, so its interval is the bench's setting (and
        # the sustained rule's); at-least-once runs as users run it, at the job's default interval.
        CHECKPOINT_INTERVAL_MS=checkpoint_ms if system.delivery == "exactly-once" else None,
        TRANSACTIONAL_ID_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
        DECODE_IN=system.decode_in,
    )
    if system.kind in ("naive-baseline", "batched-consumer"):
        return spawn(name, ["-m", f"bench.{system.kind.replace('-', '_')}"], logs / f"{name}.log", env)
    args = ["--delivery", system.delivery, "--parallelism", str(system.parallelism), "--restore", "none"]
    if system.deployment == "cluster":
        return ClusterSystem(env, args, logs, name)
    return start_job(env, args, logs / f"{name}.log")


class EventSource:
    """The same simulated events, in the same order, for every system (one simulator per system
    from the same seed, profiles seeded), encoded just before each step, outside its timing."""

    def __init__(self, cfg: StackConfig, topic: str, seed: int, redis_url: str) -> None:
        # The simulator's own population and pace, the ones the model is trained on: a denser stream
        # (it was 20 payments a second of event time) puts the minute, hour and day windows far outside
        # training, so most scores come out high and the service explains most rows (reason codes cost
        # about 10x the score), which measures a load no deployment sees.
        simulator = Simulator(SimConfig(seed=seed))
        seed_profiles(redis_url, simulator.profiles())
        self._serializer = AvroSerializer(RegistryClient(cfg.registry_url), schemas.TRANSACTION)
        self._topic = topic
        self._events = simulator.events()

    def take(self, count: int) -> list[tuple[str, bytes, bytes]]:
        return [
            (e.txn.event_id, e.txn.user_id.encode(), self._serializer.encode(self._topic, e.txn.to_record()))
            for e in itertools.islice(self._events, count)
        ]


def label(run: dict[str, Any]) -> str:
    """The key of a system in ``max_sustained_eps`` and in the summary."""
    if run["system"] != "pipeline":
        return str(run["system"])
    name = "pipeline" if run["delivery"] == "at-least-once" else "pipeline-exactly-once"
    if run.get("deployment") == "cluster":
        name += "-cluster"
    if run.get("decode_in", "python") != "python":
        name += f"-{run['decode_in']}-decode"
    return f"{name}-p{run['parallelism']}" if run.get("parallelism", 1) > 1 else name


def key_of(name: str) -> str:
    """The key of a ``--systems`` name in ``max_sustained_eps`` (``pipeline-eo`` ->
    ``pipeline-exactly-once``)."""
    s = SYSTEMS[name]
    return label(
        {
            "system": s.kind,
            "delivery": s.delivery,
            "parallelism": s.parallelism,
            "deployment": s.deployment,
            "decode_in": s.decode_in,
        }
    )


def plot(runs: list[dict[str, Any]], limit_eps: float | None, path: Path) -> None:
    """p99 latency against achieved throughput per system (medians of the trials, loads in
    order); the in-process limit as a vertical line."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name in dict.fromkeys(label(r) for r in runs if r["system"] != "in-process-limit"):
        pts = sorted(
            (r for r in runs if label(r) == name and r["latency_ms"]["p99"] is not None),
            key=lambda r: r["offered_eps"],
        )
        ax.plot(
            [r["achieved_eps"] for r in pts], [r["latency_ms"]["p99"] for r in pts], marker="o", label=name
        )
    ax.axhline(SUSTAINED_P99_MS, color="grey", linestyle="--", linewidth=1, label="sustained p99 limit")
    if limit_eps:
        ax.axvline(limit_eps, color="black", linestyle=":", linewidth=1, label="in-process limit")
    ax.set_xlabel("achieved throughput (events/s, median of trials)")
    ax.set_ylabel("end-to-end p99 latency from scheduled send (ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("Fraud scoring: p99 latency vs throughput (same events, same model, one run)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(
    best: dict[str, float], throughput: dict[str, float], costs: dict[str, float], rules: dict[str, str]
) -> str:
    """The end-of-run table: each system's ceiling and its ratio to the baselines and the limit."""
    naive = best.get("naive-baseline") or 0.0
    batched = best.get("batched-consumer") or 0.0
    limit = best.get("in-process-limit") or 0.0

    def ratio(a: float, b: float) -> str:
        return f"{a / b:6.2f}x" if b else "     -"

    lines = [
        f"{'system':<28}{'max sustained':>14}{'vs naive':>10}{'vs batched':>12}{'of limit':>10}"
        f"{'max throughput':>16}",
        "-" * 90,
    ]
    for name, eps in best.items():
        lines.append(
            f"{name:<28}{eps:>14.0f}{ratio(eps, naive):>10}{ratio(eps, batched):>12}{ratio(eps, limit):>10}"
            f"{throughput.get(name, 0):>16.0f}"
        )
    lines.append("max sustained (bisected), rules:")
    lines.extend(f"  {text}" for text in dict.fromkeys(rules.values()))
    lines.append("")
    lines.append("stage costs (µs per event, one process):")
    lines.extend(f"  {k:<32}{v:>9.1f}" for k, v in costs.items())
    return "\n".join(lines)


@dataclass
class Plan:
    """How each system is driven: the ladder, trials per load, bisection, and the step length."""

    loads: list[float]
    duration: float
    trials: int
    bisect_tolerance: float
    bisect_steps: int
    warmup_s: float
    checkpoint_ms: int


def wait_decided(rx: Receiver, ids: set[str], running: Running, timeout_s: float) -> None:
    """Wait until every id in ``ids`` is decided or ``timeout_s`` passed; fail if the system died."""
    pending = set(ids)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Look ups, not a walk over rx.received: the receiver's thread keeps adding to it.
        pending = {e for e in pending if e not in rx.received}
        if not pending:
            return
        if not running.alive:
            raise SystemExit(f"the system died; its log {running.log_path}:\n{running.tail()}")
        time.sleep(0.5)


def run_system(
    name: str,
    cfg: StackConfig,
    run_id: str,
    plan: Plan,
    seed: int,
    redis_url: str,
    scoring_url: str,
    logs: Path,
    overall: tqdm,
) -> tuple[list[dict[str, Any]], Ceiling, SustainedRule]:
    """Warm one system up, then climb the ladder and bisect (bench/ladder.py), each load run
    ``plan.trials`` times; returns one row per load tried, the ceiling and the rule applied."""
    system = SYSTEMS[name]
    rule = rule_for(system.delivery, plan.checkpoint_ms)
    rows: list[dict[str, Any]] = []
    topics = make_topics(cfg, f"bench.{run_id}.{name}")
    events = EventSource(cfg, topics["in"], seed, redis_url)
    rx = Receiver(cfg, [topics["flagged"], topics["approved"]])
    rx.start()
    process: ManagedProcess | ClusterSystem | None = None
    sender = Sender(cfg.bootstrap)
    try:
        process = start_system(name, cfg, topics, scoring_url, redis_url, logs, plan.checkpoint_ms)
        warm, _ = sender.send(topics["in"], events.take(200), 100.0, None)
        wait_decided(rx, set(warm), process, 180)
        if any(e not in rx.received for e in warm):
            raise SystemExit(f"{name}: no decisions 180 s after start; its log: {process.log_path}")
        warm_n = int(plan.loads[0] * plan.warmup_s)
        if warm_n:
            overall.set_description(f"{name} warm-up {plan.warmup_s:.0f} s")
            warm, _ = sender.send(topics["in"], events.take(warm_n), plan.loads[0], None)
            wait_decided(rx, set(warm), process, 60)
        running: ManagedProcess | ClusterSystem = process

        def try_load(load: float) -> bool:
            trials = []
            for trial in range(plan.trials):
                batch = events.take(int(load * plan.duration))
                rx.duplicates = 0
                overall.set_description(f"{name} @ {load:.0f} ev/s, trial {trial + 1}/{plan.trials}")
                scheduled, sent = sender.send(topics["in"], batch, load, overall)
                wait_decided(rx, set(scheduled), running, 60)
                time.sleep(1.0)  # late duplicates land in this trial, not the next
                trials.append(trial_figures(load, scheduled, sent, rx.received, rx.duplicates))
            step = {
                "system": system.kind,
                "delivery": system.delivery,
                "parallelism": system.parallelism,
                "deployment": system.deployment,
                "decode_in": system.decode_in,
                **combine_trials(trials),
            }
            step["sustained"] = rule.holds(step)
            rows.append(step)
            lat, spread = step["latency_ms"], step["spread"]
            tqdm.write(
                f"{name:>20} offered {load:>6.0f}  achieved {step['achieved_eps']:>7.1f} "
                f"[{spread['achieved_eps']['min']:.0f}-{spread['achieved_eps']['max']:.0f}]"
                f"  lost {step['lost']:>5}  dup {step['duplicates']:>3}  p50 {lat['p50'] or 0:>7.1f} ms"
                f"  p99 {lat['p99'] or 0:>7.1f} ms [{spread['latency_p99_ms']['min'] or 0:.0f}-"
                f"{spread['latency_p99_ms']['max'] or 0:.0f}]  {'sustained' if step['sustained'] else 'NOT sustained'}"
            )
            return bool(step["sustained"])

        ceiling = find_ceiling(plan.loads, try_load, plan.bisect_tolerance, plan.bisect_steps)
    finally:
        if process is not None:
            process.stop(timeout_s=15)
        rx.stop()
    return rows, ceiling, rule


def stage_costs(
    cfg: StackConfig, run_id: str, seed: int, redis_url: str, scoring_url: str, model_dir: Path
) -> tuple[dict[str, float], dict[str, Any]]:
    """Stage costs and the in-process limit on the benchmark's own events (bench/stages.py)."""
    topics = make_topics(cfg, f"bench.{run_id}.stages")
    values = [value for _id, _key, value in EventSource(cfg, topics["in"], seed, redis_url).take(20_000)]
    costs, limit = measure(values, cfg.registry_url, redis_url, scoring_url, DEV_API_KEY, model_dir, topics)
    row = {
        "system": "in-process-limit",
        "delivery": "none",
        "parallelism": 1,
        "deployment": "process",
        "offered_eps": limit["eps"],
        "achieved_eps": limit["eps"],
        "events": len(values),
        "lost": 0,
        "duplicates": 0,
        # What one event waits in-process: the time its batch of limit["batch"] takes.
        "latency_ms": {"p50": limit["batch_ms_p50"], "p95": None, "p99": limit["batch_ms_p99"], "max": None},
    }
    return costs, row


class BenchCli(BaseSettings):
    __doc__ = (
        "The end-to-end benchmark (make bench): the pipeline, the batched consumer and the naive baseline "
        "on the same events and model, each warmed up, then a ladder of offered loads (--trials runs each) "
        "bisected to its max sustained load, after the stage costs and the in-process limit; writes "
        "latest.json and latest.png under --out and prints a summary table (bench/e2e.py's docstring and "
        "docs/INTERFACES.md say how each figure is measured). KEEP_RUNNING=1 leaves the stack up. "
        f"{ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config(
            "make bench",
            {
                "BENCH_LOADS": "loads",
                "BENCH_DURATION_S": "duration",
                "BENCH_TRIALS": "trials",
                "BENCH_BISECT_TOLERANCE": "bisect-tolerance",
                "BENCH_BISECT_STEPS": "bisect-steps",
                "BENCH_CHECKPOINT_MS": "checkpoint-ms",
                "BENCH_WARMUP_S": "warmup",
                "BENCH_SYSTEMS": "systems",
                "BENCH_STAGES_ONLY": "stages-only",
                "BENCH_OUT": "out",
                "BENCH_SEED": "seed",
            },
        ),
        frozen=True,
        case_sensitive=True,
    )

    BENCH_LOADS: str = Field(
        DEFAULT_LOADS, description="Offered loads, events/s, ascending, comma-separated."
    )
    BENCH_DURATION_S: float = Field(15.0, description="Seconds per trial.")
    BENCH_TRIALS: int = Field(3, description="Trials per load step; a step's figures are their medians.")
    BENCH_BISECT_TOLERANCE: float = Field(
        0.10,
        description="Bisect until the last sustained and the first failed load are within this fraction.",
    )
    BENCH_BISECT_STEPS: int = Field(4, description="At most this many extra loads per system.")
    BENCH_CHECKPOINT_MS: int = Field(
        1000,
        description="The exactly-once pipeline's checkpoint interval; its p99 limit = this + 500 ms. "
        "At-least-once systems run at the job's default interval (5 s).",
    )
    BENCH_WARMUP_S: float = Field(
        20.0, description="Unmeasured seconds at the first load before each system's ladder."
    )
    BENCH_SYSTEMS: str = Field(
        ",".join(DEFAULT_SYSTEMS),
        description=f"The systems to run, comma-separated, from: {', '.join(SYSTEMS)}.",
    )
    BENCH_STAGES_ONLY: CliToggleFlag[bool] = Field(
        False, description="Only the stage costs and the in-process limit (no system is run)."
    )
    BENCH_OUT: Path = Field(
        REPO_ROOT / "bench" / "results", description="Folder of latest.json, latest.png and logs/."
    )
    BENCH_SEED: int = Field(42, description="Simulator seed: the same events, in order, for every system.")

    # Every bad option is refused (exit 2, naming it and its value) before anything starts, since a run
    # takes minutes to reach the system that would fail. The messages are the ones the argparse version
    # of this command line gave.
    @field_validator("BENCH_LOADS")
    @classmethod
    def _ascending_loads(cls, value: str) -> str:
        try:
            loads = [float(x) for x in value.split(",")]
        except ValueError:
            raise ValueError(f"{value!r} is not a comma-separated list of numbers") from None
        if loads != sorted(loads) or not all(0 < x < math.inf for x in loads):
            raise ValueError(f"{value!r} must be positive and ascending")
        return value

    @field_validator("BENCH_DURATION_S")
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"{value:g} must be > 0")
        return value

    @field_validator("BENCH_WARMUP_S")
    @classmethod
    def _warmup_not_negative(cls, value: float) -> float:
        if not value >= 0:
            raise ValueError(f"{value:g} must be >= 0")
        return value

    @field_validator("BENCH_TRIALS", "BENCH_BISECT_STEPS", "BENCH_CHECKPOINT_MS")
    @classmethod
    def _at_least(cls, value: int, info: ValidationInfo) -> int:
        minimum = {"BENCH_TRIALS": 1, "BENCH_BISECT_STEPS": 0, "BENCH_CHECKPOINT_MS": 100}[
            str(info.field_name)
        ]
        if value < minimum:
            raise ValueError(f"{value} must be >= {minimum}")
        return value

    @field_validator("BENCH_BISECT_TOLERANCE")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"{value:g} must be between 0 and 1")
        return value

    @field_validator("BENCH_SYSTEMS")
    @classmethod
    def _known_systems(cls, value: str) -> str:
        for name in value.split(","):
            if name not in SYSTEMS:
                raise ValueError(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
        return value

    @property
    def loads(self) -> list[float]:
        """The offered loads, events/s, ascending."""
        return [float(x) for x in self.BENCH_LOADS.split(",")]

    @property
    def systems(self) -> list[str]:
        """The systems to run, in the order given; none with --stages-only."""
        return [] if self.BENCH_STAGES_ONLY else self.BENCH_SYSTEMS.split(",")

    @property
    def plan(self) -> Plan:
        """How each system is driven."""
        return Plan(
            self.loads,
            self.BENCH_DURATION_S,
            self.BENCH_TRIALS,
            self.BENCH_BISECT_TOLERANCE,
            self.BENCH_BISECT_STEPS,
            self.BENCH_WARMUP_S,
            self.BENCH_CHECKPOINT_MS,
        )


@dataclass
class _Outcome:
    """What the systems produced: one row per load tried, and per system its ceiling and rule, or why it
    failed."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    ceilings: dict[str, Ceiling] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _run_systems(
    systems: list[str],
    cfg: StackConfig,
    run_id: str,
    plan: Plan,
    seed: int,
    redis_url: str,
    scoring_url: str,
    logs: Path,
    outcome: _Outcome,
) -> None:
    """Run each system's ladder in turn under one progress bar, recording into ``outcome``."""
    steps = int(sum(plan.loads) * plan.duration * plan.trials) * len(systems)
    with tqdm(total=steps, unit="ev", desc="bench", dynamic_ncols=True) as overall:
        for name in systems:
            try:
                rows, ceiling, rule = run_system(
                    name, cfg, run_id, plan, seed, redis_url, scoring_url, logs, overall
                )
            except (Exception, SystemExit) as exc:
                # One system that cannot start must not cost the others' figures: it is
                # reported in the JSON and the run exits 1.
                outcome.failures[key_of(name)] = f"{type(exc).__name__}: {exc}"[:2000]
                tqdm.write(f"{name} FAILED: {outcome.failures[key_of(name)]}")
                continue
            outcome.runs += rows
            key = key_of(name)
            outcome.ceilings[key] = ceiling
            outcome.rules[key] = rule.describe()


def main(argv: list[str] | None = None) -> int:
    args = parse_settings(BenchCli, argv)
    loads, systems, plan, out = args.loads, args.systems, args.plan, args.BENCH_OUT
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    started_at = datetime.now(UTC).isoformat()
    model_dir = REPO_ROOT / "models"
    ensure_model(model_dir)
    outcome = _Outcome()
    with ensure_stack(keep_running=os.environ.get("KEEP_RUNNING") == "1") as cfg:
        redis_url = cfg.redis_url.rsplit("/", 1)[0] + "/14"  # the benchmark's own Redis database
        port = free_port()
        service = start_scoring_service(
            model_dir, port, logs / "scoring.log", DEV_API_KEY, {"APP_ENV": "local"}
        )
        scoring_url = f"http://127.0.0.1:{port}"
        try:
            print("measuring stage costs and the in-process limit ...", flush=True)
            costs, limit_row = stage_costs(cfg, run_id, args.BENCH_SEED, redis_url, scoring_url, model_dir)
            outcome.runs.append(limit_row)
            _run_systems(systems, cfg, run_id, plan, args.BENCH_SEED, redis_url, scoring_url, logs, outcome)
        finally:
            service.stop()
    best = _max_sustained(limit_row["achieved_eps"], outcome)
    throughput = _max_throughput(limit_row["achieved_eps"], outcome.runs)
    result = {
        "started_at": started_at,
        **_result_document(args, loads, systems, outcome, best, throughput, costs),
    }
    (out / "latest.json").write_text(json.dumps(result, indent=2))
    plot(outcome.runs, limit_row["achieved_eps"], out / "latest.png")
    print(summary_table(best, throughput, costs, outcome.rules))
    print(f"wrote {out / 'latest.json'} and {out / 'latest.png'}")
    for name, why in outcome.failures.items():
        print(f"{name} failed: {why}", file=sys.stderr)
    return 1 if outcome.failures else 0


def _max_sustained(limit_eps: float, outcome: _Outcome) -> dict[str, float]:
    """Each system's bisected ceiling under its rule, next to the in-process limit; a system that failed
    sustained nothing, so it shows as 0 rather than vanishing from the comparison."""
    best: dict[str, float] = {"in-process-limit": limit_eps}
    best |= {key: c.max_sustained for key, c in outcome.ceilings.items()}
    best |= dict.fromkeys(outcome.failures, 0.0)
    return best


def _max_throughput(limit_eps: float, runs: list[dict[str, Any]]) -> dict[str, float]:
    """The highest load each system kept up with (>= 95% achieved, nothing lost) whatever the p99: how far
    it goes when latency does not matter."""
    throughput: dict[str, float] = {"in-process-limit": limit_eps}
    for r in runs:
        if r["system"] != "in-process-limit":
            key = label(r)
            throughput[key] = max(throughput.get(key, 0.0), r["offered_eps"] if keeps_up(r) else 0.0)
    return throughput


def _result_document(
    args: BenchCli,
    loads: list[float],
    systems: list[str],
    outcome: _Outcome,
    best: dict[str, float],
    throughput: dict[str, float],
    costs: dict[str, float],
) -> dict[str, Any]:
    """latest.json after its ``started_at``: the machine, the settings, every row and the figures derived
    from them (docs/INTERFACES.md describes each key)."""
    return {
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        },
        "settings": {
            "duration_s": args.BENCH_DURATION_S,
            "trials": args.BENCH_TRIALS,
            "warmup_s": args.BENCH_WARMUP_S,
            "loads": loads,
            "seed": args.BENCH_SEED,
            "bisect_tolerance": args.BENCH_BISECT_TOLERANCE,
            "bisect_steps_max": args.BENCH_BISECT_STEPS,
            "checkpoint_interval_ms": args.BENCH_CHECKPOINT_MS,
            "checkpoint_interval_ms_at_least_once": JobSettings(
                DELIVERY="at-least-once"
            ).checkpoint_interval_ms,
            "latency_from": "scheduled send time (open-loop schedule; the input's Kafka timestamp)",
        },
        "runs": outcome.runs,
        # The bisected ceiling of each system under its sustained_rule.
        "max_sustained_eps": best,
        # The rule applied to each system, and the rule of each delivery mode whichever ran.
        "sustained_rule": outcome.rules,
        "sustained_rule_by_delivery": {
            d: rule_for(d, args.BENCH_CHECKPOINT_MS).describe() for d in ("at-least-once", "exactly-once")
        },
        "bisection": {key: c.as_json(args.BENCH_BISECT_TOLERANCE) for key, c in outcome.ceilings.items()},
        # Added: the highest load kept up with (>= 95% achieved, nothing lost) whatever the p99.
        "max_throughput_eps": throughput,
        "stage_costs_us": costs,
        # The pipeline's max sustained throughput against each baseline and the in-process limit.
        "pipeline_ratios": {
            other: round(best.get("pipeline", 0.0) / best[other], 3) if best.get(other) else None
            for other in ("naive-baseline", "batched-consumer", "in-process-limit")
        },
        "notes": {"scoring_and_encoding": {k: SCORING_NOTES[SYSTEMS[k].kind] for k in systems}},
        "failures": outcome.failures,
    }


if __name__ == "__main__":
    sys.exit(main())
