"""The fault scenarios. Each starts a job on its own topics, streams events at a steady rate, does
one thing production does to a pipeline mid-stream, repairs it, and returns the oracle's row.

``recovery_s`` is the time from the repair to the first decision of an event sent after it: how
long the pipeline takes to decide fresh payments again. Scenarios without a repair report none.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

import schemas
from actions.settings import ConsumerSettings
from deploy.local.cluster import Cluster, ClusterConfig, SubmittedJob, submit_job
from deploy.local.processes import ManagedProcess, spawn
from deploy.local.stack import free_port
from faults.proxy import Mode
from faults.rig import Feed, Rig, Row, Tap, tally, wipe
from fraud_core.cli import child_env
from fraud_core.registry import RegistryClient

AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"


@dataclass(frozen=True)
class Load:
    """The stream each scenario runs: ``rate_eps`` from ``warmup_s`` before the fault until
    ``after_s`` after its repair; the fault lasts ``outage_s``."""

    rate_eps: float = 150.0
    warmup_s: float = 5.0
    outage_s: float = 8.0
    after_s: float = 8.0
    settle_timeout_s: float = 240.0


class Run:
    """One scenario's job, feed and tap, with the start, fault and end steps every scenario shares."""

    def __init__(
        self, rig: Rig, name: str, delivery: str, load: Load, seed: int = 41, cluster: Cluster | None = None
    ) -> None:
        self.rig = rig
        self.name = name
        self.delivery = delivery
        self.load = load
        self.topics = rig.topics(name)
        self.group = f"faults-{name}-{uuid.uuid4().hex[:6]}"
        self.checkpoints = rig.work_dir / f"checkpoints-{self.group}"
        self.env = rig.job_env(self.topics, delivery, self.group, self.checkpoints)
        self.job: ManagedProcess | ClusterJob
        if cluster is None:
            self.job = rig.start_job(self.env, f"job-{self.group}.log")
        else:
            self.env |= {
                "JOB_NAME": self.group,
                "CHECKPOINT_DIR": cluster.config.job_checkpoint_dir(self.group).as_uri(),
            }
            log = rig.work_dir / f"flink-run-{self.group}.log"
            submitted = submit_job(cluster.config, self.env, ["--parallelism", "2"], log)
            submitted.wait_running(timeout_s=300)
            self.job = ClusterJob(submitted, log)
        self.tap = Tap(rig.bootstrap, rig.registry_url, self.topics)
        self.feed = Feed(rig.bootstrap, rig.registry_url, self.topics.input, seed)
        self.feed.prime(20)
        rig.wait_running(self.job, self.tap)
        self.feed.start(load.rate_eps)
        time.sleep(load.warmup_s)

    def finish(self, repaired_at: float | None, note: str = "", **extra: Any) -> Row:
        time.sleep(self.load.after_s)
        self.feed.stop()
        self.tap.wait_for(self.feed.sent, self.load.settle_timeout_s)
        recovery = (
            None if repaired_at is None else self.tap.first_arrival_after(repaired_at, self.feed.sent_at)
        )
        self.job.stop(timeout_s=15)
        self.tap.close()
        return tally(self.name, self.delivery, self.feed, self.tap, recovery, note, **extra)


class ClusterJob:
    """A job submitted to the standalone cluster, with the few calls :class:`Run` makes."""

    def __init__(self, job: SubmittedJob, log_path: Path) -> None:
        self.submitted = job
        self.log_path = log_path

    @property
    def alive(self) -> bool:
        return self.submitted.state() in ("RUNNING", "RESTARTING", "CREATED", "INITIALIZING")

    def tail(self, lines: int = 30) -> str:
        return f"{self.submitted.web_url}\n" + "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def stop(self, timeout_s: float = 60.0) -> None:
        self.submitted.cancel(timeout_s)

    def kill(self) -> None:
        self.stop()


def taskmanager_kill(rig: Rig, delivery: str, load: Load) -> Row:
    """The job on a standalone cluster (`make cluster`: one JobManager, two TaskManagers, the job
    at parallelism 2, one slot on each); one TaskManager SIGKILLed mid-stream. The job restarts
    from its last checkpoint on the surviving TaskManager's slots without waiting for a
    replacement, so ``recovery_s`` counts from the kill. The killed one is started again later."""
    config = ClusterConfig(
        state_dir=rig.work_dir / "flink-cluster",
        rest_port=free_port(),
        rpc_port=free_port(),
        metrics_ports="",
    )
    cluster = Cluster(config, env={"SCORING_API_KEY": rig.api_key})
    cluster.up()
    try:
        run = Run(rig, "taskmanager-kill", delivery, load, cluster=cluster)
        cluster.kill_taskmanager(1)
        killed = time.monotonic()
        time.sleep(load.outage_s)
        row = run.finish(killed, "1 of 2 TaskManagers SIGKILLed; job restarted on the other (parallelism 2)")
        assert isinstance(run.job, ClusterJob)
        row.extra = {"job_failures": len(run.job.submitted.failures())}
        row.holds = row.holds and row.extra["job_failures"] >= 1  # the kill really hit the job
        return row
    finally:
        cluster.down()


def _service_killed(name: str, service: str, note: str) -> Callable[[Rig, str, Load], Row]:
    def scenario(rig: Rig, delivery: str, load: Load) -> Row:
        run = Run(rig, name, delivery, load)
        svc = rig.svc(service)
        rig.stack.kill(svc)
        time.sleep(load.outage_s)
        rig.stack.start(svc)
        return run.finish(time.monotonic(), note)

    scenario.__doc__ = f"SIGKILL {service} mid-stream, restart it ``outage_s`` later on its data."
    return scenario


broker_kill = _service_killed("broker-kill", "kafka", "broker SIGKILLed, restarted on its data")
redis_down = _service_killed("redis-down", "redis", "Redis SIGKILLed and restarted")


def registry_down(rig: Rig, delivery: str, load: Load) -> Row:
    """The registry stops; meanwhile the producer switches to a new writer schema the job has not
    cached, so the job cannot decode until the registry is back. Nothing may be dead-lettered."""
    run = Run(rig, "registry-down", delivery, load)
    schema_id, parsed = _register_v2(rig, run.topics.input)
    registry = rig.svc("registry")
    rig.stack.stop(registry)
    down = time.monotonic()
    run.feed.writer = (schema_id, parsed)
    time.sleep(load.outage_s)
    rig.stack.start(registry)
    repaired = time.monotonic()
    row = run.finish(repaired, "new writer schema while the registry was down", extra_holds=not run.tap.dead)
    # Proof that the job met the outage and waited it out: no v2 event was decided while it lasted.
    v2_during = [t for t, r in run.tap.decisions if run.feed.sent_at[r["event_id"]] >= down and t < repaired]
    row.extra = {"v2_events_decided_while_down": len(v2_during), "outage_s": round(repaired - down, 1)}
    row.holds = row.holds and not v2_during
    return row


def schema_change(rig: Rig, delivery: str, load: Load) -> Row:
    """Mid-stream the producer moves to a compatible v2 (an added field with a default)."""
    run = Run(rig, "schema-change", delivery, load)
    run.feed.writer = _register_v2(rig, run.topics.input)
    return run.finish(None, "v1 and v2 writers in one stream", extra_holds=not run.tap.dead)


def _register_v2(rig: Rig, topic: str) -> tuple[int, Any]:
    v2 = schemas.load_json(schemas.TRANSACTION)
    v2["fields"] = [*v2["fields"], {"name": "promo_code", "type": ["null", "string"], "default": None}]
    text = json.dumps(v2)
    return RegistryClient(rig.registry_url).register(f"{topic}-value", text), fastavro.parse_schema(v2)


def _proxy_fault(mode: Mode, name: str) -> Callable[[Rig, str, Load], Row]:
    def scenario(rig: Rig, delivery: str, load: Load) -> Row:
        run = Run(rig, name, delivery, load)
        rig.proxy.mode = mode
        time.sleep(load.outage_s)
        rig.proxy.mode = Mode.PASS
        return run.finish(time.monotonic(), f"scoring service {mode.value} for {load.outage_s:.0f}s")

    scenario.__doc__ = f"The scoring service {mode.value} (through the fault proxy) mid-stream."
    return scenario


scoring_slow = _proxy_fault(Mode.SLOW, "scoring-slow")
scoring_500 = _proxy_fault(Mode.ERROR, "scoring-500")


def scoring_down(rig: Rig, delivery: str, load: Load) -> Row:
    """The scoring service's process SIGKILLed, started again after ``outage_s``."""
    run = Run(rig, "scoring-down", delivery, load)
    rig.stop_service(kill=True)
    time.sleep(load.outage_s)
    rig.start_service()
    return run.finish(time.monotonic(), "service SIGKILLed and restarted")


def model_promoted(rig: Rig, delivery: str, load: Load) -> Row:
    """A second model version goes live under load (hot reload): no request may fail and every
    decision names the version that scored it."""
    from inference_service.model_registry import LIVE_POINTER, read_pointer, write_pointer

    before = read_pointer(rig.model_dir, LIVE_POINTER)
    candidates = sorted(p.name for p in rig.model_dir.iterdir() if (p / "card.json").exists() or p.is_dir())
    after = next((v for v in candidates if v != before and (rig.model_dir / v).is_dir()), None)
    if before is None or after is None:
        raise RuntimeError(f"{rig.model_dir} needs a LIVE model and a second version (see faults.__main__)")
    run = Run(rig, "model-promoted", delivery, load)
    write_pointer(rig.model_dir, LIVE_POINTER, after)
    promoted = time.monotonic()
    try:
        row = run.finish(None, f"LIVE {before} -> {after} under load")
    finally:
        write_pointer(rig.model_dir, LIVE_POINTER, before)
    sent_at = run.feed.sent_at
    versions = {r["model_version"] for _, r in run.tap.decisions}
    # The service polls LIVE every second: events sent 3 s after the switch must all meet the new model.
    late = [r["model_version"] for _, r in run.tap.decisions if sent_at[r["event_id"]] > promoted + 3]
    row.extra = {"versions": sorted(versions), "from": before, "to": after, "events_after_switch": len(late)}
    row.holds = row.holds and row.degraded == 0 and versions <= {before, after} and bool(late)
    row.holds = row.holds and set(late) == {after}
    return row


def checkpoints_lost(rig: Rig, delivery: str, load: Load) -> Row:
    """The job is SIGKILLed and its checkpoint folder is lost: the restart must say so, resume
    near the offsets the last checkpoint committed to Kafka, and decide what the lost checkpoint
    held without repeating what was published (flink_jobs/resume.py)."""
    run = Run(rig, "checkpoints-lost", delivery, load)
    run.job.kill()
    wipe(run.checkpoints)
    run.job = rig.start_job(run.env, f"job-{run.group}-restart.log")
    repaired = time.monotonic()
    said = all(
        _log_says(run.job.log_path, needle, 120)
        # the launcher's plan, then the operator's count (Python operators log through the JVM)
        for needle in ("no completed checkpoint", "no checkpoint: the last run of group", "resuming:")
    )
    row = run.finish(repaired, "job SIGKILLed, checkpoint folder deleted", extra_holds=said)
    return row


def consumers_killed(rig: Rig, delivery: str, load: Load) -> Row:
    """The action consumers SIGKILLed mid-batch and restarted: every decision acted on, none twice.

    Users start without a profile, and an approved payment adds one to its user's ``txn_count``
    (actions/logic.py), so the sum of ``txn_count`` over the users must equal the approved
    decisions: an action applied twice would show as more. ``duplicates`` counts those extra
    applications (under exactly-once every event has one decision, which makes the count exact).
    """
    import redis

    from fraud_core.enrichment import parse_profile, profile_key
    from fraud_core.topics import TopicSpec

    rig.flush_redis()
    run = Run(rig, "consumer-kill", delivery, load, seed=97)
    actions_topic = f"actions.{run.group}"
    from deploy.local.bootstrap import create_topics

    create_topics(rig.bootstrap, [TopicSpec(actions_topic, 4, 24 * 3600 * 1000, schemas.ACTION)])
    RegistryClient(rig.registry_url).register(f"{actions_topic}-value", schemas.load_text(schemas.ACTION))
    env = child_env(
        ConsumerSettings,
        KAFKA_BOOTSTRAP_SERVERS=rig.bootstrap,
        SCHEMA_REGISTRY_URL=rig.registry_url,
        REDIS_URL=rig.redis_url,
        FLAGGED_TOPIC=run.topics.flagged,
        APPROVED_TOPIC=run.topics.approved,
        ACTIONS_TOPIC=actions_topic,
        DLQ_TOPIC=run.topics.dlq,
        GROUP_ID=run.group,
        ACTIONS_METRICS_PORT=0,
        AUTO_OFFSET_RESET="earliest",
        BATCH_MAX=200,
    )
    log = rig.work_dir / f"actions-{run.group}.log"
    consumers = spawn("actions", ["-m", "actions"], log, env)
    time.sleep(load.outage_s)
    consumers.kill()
    killed_at = time.monotonic()
    consumers = spawn("actions", ["-m", "actions"], log, env)
    try:
        row = run.finish(None, "action consumers SIGKILLed mid-stream and restarted")
        decided = {r["event_id"]: r for _, r in run.tap.decisions}
        client = redis.Redis.from_url(rig.redis_url)
        keys = [f"actions:done:{e}" for e in decided]
        deadline = time.monotonic() + load.settle_timeout_s
        markers = 0
        while keys and time.monotonic() < deadline:
            markers = int(client.exists(*keys))  # type: ignore[arg-type]
            if markers == len(keys):
                break
            time.sleep(1)
        users = {r["user_id"] for r in decided.values()}
        profiles = [parse_profile(client.get(profile_key(u))) for u in users]  # type: ignore[arg-type]
        learnt = sum(p.txn_count for p in profiles if p is not None)
        approved = sum(1 for r in decided.values() if r["decision"] == "APPROVED")
        client.close()
    finally:
        consumers.stop()
    row.extra = {"acted_on": int(markers), "approved": approved, "profile_payments_learnt": learnt}
    row.duplicates += max(learnt - approved, 0)
    row.lost += len(decided) - markers
    row.holds = row.lost == 0 and learnt == approved
    row.recovery_s = run.tap.first_arrival_after(killed_at, run.feed.sent_at)
    return row


def _log_says(path: Path, needle: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


Scenario = Callable[[Rig, str, Load], Row]

SCENARIOS: dict[str, tuple[Scenario, tuple[str, ...]]] = {
    "broker-kill": (broker_kill, (AT_LEAST_ONCE, EXACTLY_ONCE)),
    "registry-down": (registry_down, (AT_LEAST_ONCE, EXACTLY_ONCE)),
    "schema-change": (schema_change, (AT_LEAST_ONCE,)),
    "scoring-slow": (scoring_slow, (AT_LEAST_ONCE,)),
    "scoring-500": (scoring_500, (AT_LEAST_ONCE,)),
    "scoring-down": (scoring_down, (AT_LEAST_ONCE,)),
    "redis-down": (redis_down, (AT_LEAST_ONCE,)),
    "model-promoted": (model_promoted, (AT_LEAST_ONCE,)),
    "checkpoints-lost": (checkpoints_lost, (AT_LEAST_ONCE, EXACTLY_ONCE)),
    "consumer-kill": (consumers_killed, (EXACTLY_ONCE,)),
    "taskmanager-kill": (taskmanager_kill, (EXACTLY_ONCE,)),
}
