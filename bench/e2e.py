"""End-to-end benchmark: the pipeline (both delivery modes, and at parallelism 2) against the naive
baseline and the batched consumer, on the same events and model, over a ladder of offered loads,
in one run (``make bench``). First it measures the cost of each stage and the in-process limit
(bench/stages.py), so every system is also shown as a fraction of what this Python code can do.

Latency of an event = the time this benchmark's consumer receives its decision minus the input
record's Kafka timestamp (set when the benchmark sends it). Achieved throughput of a step = decided
events / (last decision received - first event sent - the smallest latency seen), i.e. the rate at
which decisions came out while the input was flowing. A load is *sustained* when achieved >= 95% of
offered, nothing is lost and p99 <= 500 ms. Each system climbs the ladder until it stops sustaining
a load. Writes bench/results/latest.json and latest.png, and prints a summary table with ratios.

Before its first measured step each system is warmed up, unmeasured: 200 events until all are
decided, then --warmup seconds at the first load (the JVM's JIT, the first checkpoint, connection
pools and the model's first calls). Without it the first step measures the start-up: on a slow day
consecutive 100 ev/s steps of the pipeline gave p99 818, 716, 534 and 153 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from confluent_kafka import Producer
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import schemas
from bench.stages import measure
from deploy.local.bootstrap import create_topics, register_schemas
from deploy.local.processes import ManagedProcess, ensure_model, spawn, start_job, start_scoring_service
from deploy.local.stack import REPO_ROOT, StackConfig, ensure_stack, free_port
from flink_jobs.settings import JobSettings
from fraud_core.cli import child_env
from fraud_core.connections import KafkaConnection, as_connection
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.kafka_io import consumer
from fraud_core.registry import RegistryClient
from fraud_core.settings import DEV_API_KEY
from fraud_core.simulator import SimConfig, Simulator
from fraud_core.topics import DAY_MS, TopicSpec
from producers.profiles import seed_profiles

SUSTAINED_FRACTION = 0.95
SUSTAINED_P99_MS = 500.0
# name -> (system, delivery, parallelism)
SYSTEMS = {
    "pipeline": ("pipeline", "at-least-once", 1),
    "pipeline-eo": ("pipeline", "exactly-once", 1),
    "pipeline-p2": ("pipeline", "at-least-once", 2),
    "batched-consumer": ("batched-consumer", "at-least-once", 1),
    "naive-baseline": ("naive-baseline", "at-least-once", 1),
}
DEFAULT_LOADS = "100,250,500,1000,2000,3000,4000,5000,8000"


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
    """Sends pre-encoded events at a paced rate; the Kafka timestamp is the send time."""

    def __init__(self, bootstrap: str | KafkaConnection) -> None:
        self.producer = Producer(
            as_connection(bootstrap).librdkafka(**{"enable.idempotence": True, "acks": "all", "linger.ms": 1})
        )
        self.publisher = Publisher(self.producer, drain_s=0.01)

    def send(
        self, topic: str, batch: list[tuple[str, bytes, bytes]], rate: float, bar: tqdm | None
    ) -> dict[str, int]:
        sent: dict[str, int] = {}
        start = time.monotonic()
        for i, (event_id, key, value) in enumerate(batch):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0.002:
                self.publisher.poll(0)
                time.sleep(delay)
            ts = time.time_ns() // 1_000_000
            self.publisher.produce(topic, key, value, new_headers(), timestamp_ms=ts)
            sent[event_id] = ts
            if bar is not None and i % 200 == 0:
                bar.update(min(200, len(batch) - i))
        self.publisher.flush(30)
        return sent


def summarize(name: str, offered: float, sent: dict[str, int], rx: Receiver) -> dict[str, Any]:
    system, delivery, parallelism = SYSTEMS[name]
    got = {e: rx.received[e] for e in sent if e in rx.received}
    latencies = np.array([got[e] - sent[e] for e in got], dtype=float)
    lost = len(sent) - len(got)
    if len(latencies):
        span_s = (max(got.values()) - min(sent.values()) - latencies.min()) / 1000
        achieved = len(got) / max(span_s, 1e-3)
        pct = {q: float(np.percentile(latencies, q)) for q in (50, 95, 99)}
        latency: dict[str, float | None] = {
            "p50": pct[50],
            "p95": pct[95],
            "p99": pct[99],
            "max": float(latencies.max()),
        }
    else:
        achieved = 0.0
        latency = {"p50": None, "p95": None, "p99": None, "max": None}
    return {
        "system": system,
        "delivery": delivery,
        "parallelism": parallelism,
        "offered_eps": offered,
        "achieved_eps": round(min(achieved, offered * 1.05), 1),
        "events": len(sent),
        "lost": lost,
        "duplicates": rx.duplicates,
        "latency_ms": latency,
    }


def keeps_up(run: dict[str, Any]) -> bool:
    """Throughput alone: achieved >= 95% of offered and nothing lost, whatever the latency."""
    return bool(run["achieved_eps"] >= SUSTAINED_FRACTION * run["offered_eps"] and run["lost"] == 0)


def sustained(run: dict[str, Any]) -> bool:
    p99 = run["latency_ms"]["p99"]
    return (
        run["achieved_eps"] >= SUSTAINED_FRACTION * run["offered_eps"]
        and run["lost"] == 0
        and p99 is not None
        and p99 <= SUSTAINED_P99_MS
    )


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


def start_system(
    name: str,
    cfg: StackConfig,
    topics: dict[str, str],
    scoring_url: str,
    redis_url: str,
    logs: Path,
) -> ManagedProcess:
    kind, delivery, parallelism = SYSTEMS[name]
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
        TRANSACTIONAL_ID_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
    )
    if kind in ("naive-baseline", "batched-consumer"):
        return spawn(name, ["-m", f"bench.{kind.replace('-', '_')}"], logs / f"{name}.log", env)
    args = ["--delivery", delivery, "--parallelism", str(parallelism), "--restore", "none"]
    return start_job(env, args, logs / f"{name}.log")


_ENCODED: dict[tuple[int, int, int], list[tuple[str, bytes, bytes]]] = {}


def encode_events(
    cfg: StackConfig, topic: str, count: int, seed: int, redis_url: str
) -> list[tuple[str, bytes, bytes]]:
    """The same simulated events for every system (encoded once per schema id), profiles seeded."""
    simulator = Simulator(SimConfig(seed=seed, n_users=5000, rate_eps=20.0))
    seed_profiles(redis_url, simulator.profiles())
    serializer = AvroSerializer(RegistryClient(cfg.registry_url), schemas.TRANSACTION)
    key = (serializer.schema_id(topic), seed, count)
    if key not in _ENCODED:
        _ENCODED[key] = [
            (e.txn.event_id, e.txn.user_id.encode(), serializer.encode(topic, e.txn.to_record()))
            for e in simulator.events(count=count)
        ]
    return _ENCODED[key]


def label(run: dict[str, Any]) -> str:
    """The key of a system in ``max_sustained_eps`` and in the summary."""
    if run["system"] != "pipeline":
        return str(run["system"])
    name = "pipeline" if run["delivery"] == "at-least-once" else "pipeline-exactly-once"
    return f"{name}-p{run['parallelism']}" if run.get("parallelism", 1) > 1 else name


def plot(runs: list[dict[str, Any]], limit_eps: float | None, path: Path) -> None:
    """p99 latency against achieved throughput per system; the in-process limit as a vertical line."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name in dict.fromkeys(label(r) for r in runs if r["system"] != "in-process-limit"):
        pts = [r for r in runs if label(r) == name and r["latency_ms"]["p99"] is not None]
        ax.plot(
            [r["achieved_eps"] for r in pts], [r["latency_ms"]["p99"] for r in pts], marker="o", label=name
        )
    ax.axhline(SUSTAINED_P99_MS, color="grey", linestyle="--", linewidth=1, label="sustained p99 limit")
    if limit_eps:
        ax.axvline(limit_eps, color="black", linestyle=":", linewidth=1, label="in-process limit")
    ax.set_xlabel("achieved throughput (events/s)")
    ax.set_ylabel("end-to-end p99 latency (ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("Fraud scoring: p99 latency vs throughput (same events, same model, one run)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(best: dict[str, float], throughput: dict[str, float], costs: dict[str, float]) -> str:
    """The end-of-run table: each system's ceiling and its ratio to the baselines and the limit."""
    naive = best.get("naive-baseline") or 0.0
    batched = best.get("batched-consumer") or 0.0
    limit = best.get("in-process-limit") or 0.0

    def ratio(a: float, b: float) -> str:
        return f"{a / b:6.2f}x" if b else "     -"

    lines = [
        f"{'system':<26}{'max sustained':>14}{'vs naive':>10}{'vs batched':>12}{'of limit':>10}"
        f"{'max throughput':>16}",
        "-" * 88,
    ]
    for name, eps in best.items():
        lines.append(
            f"{name:<26}{eps:>14.0f}{ratio(eps, naive):>10}{ratio(eps, batched):>12}{ratio(eps, limit):>10}"
            f"{throughput.get(name, 0):>16.0f}"
        )
    lines.append("max sustained: achieved >= 95% of offered, nothing lost, p99 <= 500 ms (CONTRACT.md)")
    lines.append("")
    lines.append("stage costs (µs per event, one process):")
    lines.extend(f"  {k:<32}{v:>9.1f}" for k, v in costs.items())
    return "\n".join(lines)


def run_system(
    name: str,
    cfg: StackConfig,
    run_id: str,
    loads: list[float],
    duration: float,
    seed: int,
    redis_url: str,
    scoring_url: str,
    logs: Path,
    overall: tqdm,
    warmup_s: float = 0.0,
) -> list[dict[str, Any]]:
    """Warm one system up, then climb the ladder of loads until it stops sustaining one."""
    runs: list[dict[str, Any]] = []
    topics = make_topics(cfg, f"bench.{run_id}.{name}")
    warm_n = int(loads[0] * warmup_s)
    total = int(sum(loads) * duration) + 200 + warm_n
    batch = encode_events(cfg, topics["in"], total, seed, redis_url)
    rx = Receiver(cfg, [topics["flagged"], topics["approved"]])
    rx.start()
    process = start_system(name, cfg, topics, scoring_url, redis_url, logs)
    sender = Sender(cfg.bootstrap)
    try:
        warm = sender.send(topics["in"], batch[:200], 100.0, None)
        deadline = time.monotonic() + 180
        while not set(warm) <= set(rx.received):
            if not process.alive:
                raise SystemExit(f"{name} died:\n{process.tail()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: no decisions 180 s after start; its log: {process.log_path}")
            time.sleep(0.5)
        if warm_n:
            overall.set_description(f"{name} warm-up {warmup_s:.0f} s")
            warm = sender.send(topics["in"], batch[200 : 200 + warm_n], loads[0], None)
            drain_until = time.monotonic() + 60
            while not set(warm) <= set(rx.received) and time.monotonic() < drain_until:
                time.sleep(0.5)
        offset = 200 + warm_n
        for step_no, load in enumerate(loads):
            n = int(load * duration)
            step = batch[offset : offset + n]
            offset += n
            rx.duplicates = 0
            overall.set_description(f"{name} @ {load:.0f} ev/s")
            sent = sender.send(topics["in"], step, load, overall)
            drain_until = time.monotonic() + 60
            while not set(sent) <= set(rx.received) and time.monotonic() < drain_until:
                time.sleep(0.5)
            time.sleep(1.0)
            run = summarize(name, load, sent, rx)
            runs.append(run)
            lat = run["latency_ms"]
            tqdm.write(
                f"{name:>17} offered {load:>6.0f}  achieved {run['achieved_eps']:>7.1f}  lost {run['lost']:>5}"
                f"  dup {run['duplicates']:>3}  p50 {lat['p50'] or 0:>7.1f} ms  p99 {lat['p99'] or 0:>7.1f} ms"
                f"  {'sustained' if sustained(run) else 'NOT sustained'}"
            )
            # Exactly-once decisions wait for a checkpoint, so its p99 is about the checkpoint
            # interval whatever the load: its ladder climbs on throughput alone.
            done = not keeps_up(run) if run["delivery"] == "exactly-once" else not sustained(run)
            if done:
                overall.update(sum(int(x * duration) for x in loads[step_no + 1 :]))
                break  # the ceiling is found: higher loads only add backlog
    finally:
        process.stop(timeout_s=15)
        rx.stop()
    return runs


def stage_costs(
    cfg: StackConfig, run_id: str, seed: int, redis_url: str, scoring_url: str, model_dir: Path
) -> tuple[dict[str, float], dict[str, Any]]:
    """Stage costs and the in-process limit on the benchmark's own events (bench/stages.py)."""
    topics = make_topics(cfg, f"bench.{run_id}.stages")
    values = [value for _id, _key, value in encode_events(cfg, topics["in"], 20_000, seed, redis_url)]
    costs, limit = measure(values, cfg.registry_url, redis_url, scoring_url, DEV_API_KEY, model_dir, topics)
    row = {
        "system": "in-process-limit",
        "delivery": "none",
        "parallelism": 1,
        "offered_eps": limit["eps"],
        "achieved_eps": limit["eps"],
        "events": len(values),
        "lost": 0,
        "duplicates": 0,
        # What one event waits in-process: the time its batch of limit["batch"] takes.
        "latency_ms": {"p50": limit["batch_ms_p50"], "p95": None, "p99": limit["batch_ms_p99"], "max": None},
    }
    return costs, row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--loads", default=DEFAULT_LOADS, help=f"offered loads, events/s (default {DEFAULT_LOADS})"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load step (default 15)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=20.0,
        help="unmeasured seconds at the first load before each system's ladder (default 20)",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=", ".join(SYSTEMS))
    parser.add_argument("--stages-only", action="store_true", help="only the stage costs and the limit")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    loads = [float(x) for x in args.loads.split(",")]
    systems = [] if args.stages_only else args.systems.split(",")
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"--systems: unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    started_at = datetime.now(UTC).isoformat()
    model_dir = REPO_ROOT / "models"
    ensure_model(model_dir)
    runs: list[dict[str, Any]] = []
    with ensure_stack(keep_running=os.environ.get("KEEP_RUNNING") == "1") as cfg:
        redis_url = cfg.redis_url.rsplit("/", 1)[0] + "/14"  # the benchmark's own Redis database
        port = free_port()
        service = start_scoring_service(
            model_dir, port, logs / "scoring.log", DEV_API_KEY, {"APP_ENV": "local"}
        )
        scoring_url = f"http://127.0.0.1:{port}"
        try:
            print("measuring stage costs and the in-process limit ...", flush=True)
            costs, limit_row = stage_costs(cfg, run_id, args.seed, redis_url, scoring_url, model_dir)
            runs.append(limit_row)
            steps = int(sum(loads) * args.duration) * len(systems)
            with tqdm(total=steps, unit="ev", desc="bench", dynamic_ncols=True) as overall:
                for name in systems:
                    runs += run_system(
                        name,
                        cfg,
                        run_id,
                        loads,
                        args.duration,
                        args.seed,
                        redis_url,
                        scoring_url,
                        logs,
                        overall,
                        args.warmup,
                    )
        finally:
            service.stop()
    best: dict[str, float] = {}
    throughput: dict[str, float] = {}
    for r in runs:
        key = label(r)
        best.setdefault(key, 0.0)
        throughput.setdefault(key, 0.0)
        if r["system"] == "in-process-limit" or sustained(r):
            best[key] = max(best[key], r["offered_eps"])
        if r["system"] == "in-process-limit" or keeps_up(r):
            throughput[key] = max(throughput[key], r["offered_eps"])
    result = {
        "started_at": started_at,
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        },
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "loads": loads, "seed": args.seed},
        "runs": runs,
        "max_sustained_eps": best,
        # Added: the highest load kept up with (>= 95% achieved, nothing lost) whatever the p99;
        # the figure that matters for exactly-once, whose p99 is about one checkpoint interval.
        "max_throughput_eps": throughput,
        "stage_costs_us": costs,
        # The pipeline's max sustained throughput against each baseline and the in-process limit.
        "pipeline_ratios": {
            other: round(best.get("pipeline", 0.0) / best[other], 3) if best.get(other) else None
            for other in ("naive-baseline", "batched-consumer", "in-process-limit")
        },
    }
    (args.out / "latest.json").write_text(json.dumps(result, indent=2))
    plot(runs, limit_row["achieved_eps"], args.out / "latest.png")
    print(summary_table(best, throughput, costs))
    print(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
