"""The fault scenarios. Each starts a job on its own topics, streams events at a steady rate, does
one thing production does to a pipeline mid-stream, repairs it, and returns the oracle's row.

Each scenario proves its fault happened (``fault_observed``: a process gone and its port closed, a
job failure counted by Flink, degraded decisions seen, the proxy's mode met by requests) and keeps
streaming after the repair, so ``events_after_repair`` shows the pipeline working again.
``recovery_s`` measures the part that was faulted: for a killed job or broker, the time from the
repair to the first decision of an event sent after it; for the scoring service and Redis, until
decisions are no longer degraded; for the action consumers, until their lag is back to what it was
before the kill. Scenarios without a repair (a schema change, a model promotion) report none.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fastavro
import requests

import schemas
from actions.settings import ConsumerSettings
from deploy.local.cluster import Cluster
from deploy.local.processes import ManagedProcess, spawn
from deploy.local.stack import free_port, port_open
from faults.proxy import Mode
from faults.rig import FaultNotObserved, Feed, Rig, Row, Tap, row_holds, tally, wipe
from fraud_core.cli import child_env
from fraud_core.flink_cluster import ClusterConfig, SubmittedJob, submit_job
from fraud_core.model_folder import LIVE_POINTER, card_path, read_pointer, write_pointer
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
        self.problems: list[str] = []  # why a fault could not be shown to have happened
        self.tap = Tap(rig.bootstrap, rig.registry_url, self.topics)
        self.feed = Feed(rig.bootstrap, rig.registry_url, self.topics.input, seed)
        self.feed.prime(20)
        rig.wait_running(self.job, self.tap)
        self.feed.start(load.rate_eps)
        time.sleep(load.warmup_s)

    def finish(
        self,
        repaired_at: float,
        fault_observed: str,
        note: str = "",
        recovery: Literal["first-decision", "not-degraded", "none"] = "first-decision",
        extra_holds: bool = True,
    ) -> Row:
        """Stream ``after_s`` more, wait for every decision, and tally; ``repaired_at`` is when the
        fault ended (or, without a repair, when the change happened)."""
        time.sleep(self.load.after_s)
        self.feed.stop()
        self.tap.wait_for(self.feed.sent, self.load.settle_timeout_s)
        sent_at = self.feed.sent_at
        recovery_s = None
        if recovery == "first-decision":
            recovery_s = self.tap.first_arrival_after(repaired_at, sent_at)
        elif recovery == "not-degraded":
            recovery_s = self.tap.healthy_after(repaired_at, sent_at)
        self.job.stop(timeout_s=15)
        self.tap.close()
        decisions = [r for _, r in self.tap.decisions]
        return tally(
            self.name,
            self.delivery,
            sent_at,
            decisions,
            self.tap.dead_ids(),
            recovery_s,
            repaired_at,
            fault_observed,
            "; ".join([note, *self.problems]),
            extra_holds,
        )

    def observed(self, check: Callable[[], str]) -> str:
        """What ``check`` says showed the fault; "" when it raised :class:`FaultNotObserved`, whose
        message then goes into the row's note. The scenario goes on either way, so its job, feed
        and tap are stopped by :meth:`finish` and the row says what was missing."""
        try:
            return check()
        except FaultNotObserved as exc:
            self.problems.append(str(exc))
            return ""

    def degraded_seen(self, start: float, end: float) -> str:
        """The fault seen in the output: degraded decisions of events sent while it lasted.

        Raises:
            FaultNotObserved: no decision of that time was degraded.
        """
        # The feed is still running; its dictionary is copied before it is read.
        n = self.tap.degraded_between(start, end, dict(self.feed.sent_at))
        if n == 0:
            raise FaultNotObserved(f"{self.name}: no degraded decision of an event sent during the fault")
        return f"{n} degraded decisions"


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


def both(*observations: str) -> str:
    """The observations joined, or "" when any is missing: a fault is shown by all of them."""
    return "; ".join(observations) if all(observations) else ""


def taskmanager_kill(rig: Rig, delivery: str, load: Load) -> Row:
    """The job on a standalone cluster (`make cluster`: one JobManager, two TaskManagers, the job at
    parallelism 2); the TaskManager that runs the most of the job's subtasks, found through Flink's
    REST API, is SIGKILLed mid-stream, so the fault always hits the job whatever the slot placement.
    The job restarts from its last checkpoint on the surviving TaskManager's slots without waiting
    for a replacement, so ``recovery_s`` counts from the kill."""
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
        assert isinstance(run.job, ClusterJob)
        job = run.job.submitted
        placement = subtasks_per_taskmanager(job.rest_url, job.job_id)
        resource_ids = {i: cluster.taskmanager_resource_id(i) for i in range(1, config.taskmanagers + 1)}
        killed = time.monotonic()
        failures, observed = 0, ""
        try:
            index = taskmanager_to_kill(placement, resource_ids)
        except FaultNotObserved as exc:
            run.problems.append(str(exc))
        else:
            pid = cluster.kill_taskmanager(index)
            killed = time.monotonic()
            failures = _wait_for_failure(job, load.settle_timeout_s)
            ran = placement[resource_ids[index] or ""]
            if failures:
                observed = (
                    f"taskmanager-{index} (pid {pid}) ran {ran} of the job's running subtasks; "
                    f"{failures} job failure(s) counted by Flink"
                )
            else:
                run.problems.append(
                    f"taskmanager-{index} (pid {pid}) killed, but Flink counted no job failure"
                )
        time.sleep(load.outage_s)
        row = run.finish(
            killed,
            observed,
            "the TaskManager running the job's subtasks SIGKILLed; job restarted (parallelism 2)",
        )
        row.extra = {"job_failures": failures, "subtasks_per_taskmanager": placement}
        return row
    finally:
        cluster.down()


def subtasks_per_taskmanager(rest_url: str, job_id: str) -> dict[str, int]:
    """TaskManager resource id -> how many of the job's subtasks it runs, from
    ``/jobs/<id>/vertices/<vertex>/taskmanagers`` for every vertex of the job."""
    details = requests.get(f"{rest_url}/jobs/{job_id}", timeout=5).json()
    counts: dict[str, int] = {}
    for vertex in details["vertices"]:
        answer = requests.get(f"{rest_url}/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers", timeout=5)
        answer.raise_for_status()
        for tm in answer.json()["taskmanagers"]:
            running = int(tm["status-counts"].get("RUNNING", 0))
            counts[tm["taskmanager-id"]] = counts.get(tm["taskmanager-id"], 0) + running
    return counts


def taskmanager_to_kill(placement: dict[str, int], resource_ids: dict[int, str | None]) -> int:
    """The number (1-based) of the TaskManager that runs the most subtasks.

    Raises:
        FaultNotObserved: none of the cluster's TaskManagers runs a subtask of the job.
    """
    candidates = [(placement.get(rid or "", 0), i) for i, rid in resource_ids.items()]
    count, index = max(candidates, default=(0, 0))
    if count == 0:
        raise FaultNotObserved(f"no TaskManager of {resource_ids} runs the job's subtasks ({placement})")
    return index


def _wait_for_failure(job: SubmittedJob, timeout_s: float) -> int:
    """The job failures Flink counts, once there is at least one (or 0 after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(requests.RequestException):
            if failures := len(job.failures()):
                return failures
        if time.monotonic() > deadline:
            return 0
        time.sleep(0.5)


def broker_kill(rig: Rig, delivery: str, load: Load) -> Row:
    """SIGKILL the broker mid-stream, restart it ``outage_s`` later on its data."""
    run = Run(rig, "broker-kill", delivery, load)
    observed = run.observed(lambda: rig.take_down("kafka"))
    time.sleep(load.outage_s)
    rig.stack.start(rig.svc("kafka"))
    return run.finish(time.monotonic(), observed, "broker SIGKILLed, restarted on its data")


def redis_down(rig: Rig, delivery: str, load: Load) -> Row:
    """SIGKILL Redis mid-stream, restart it ``outage_s`` later: the job decides without profiles
    (degraded) meanwhile; recovery is the time until decisions are not degraded again."""
    run = Run(rig, "redis-down", delivery, load)
    down = time.monotonic()
    gone = run.observed(lambda: rig.take_down("redis"))
    time.sleep(load.outage_s)
    rig.stack.start(rig.svc("redis"))
    repaired = time.monotonic()
    seen = run.observed(lambda: run.degraded_seen(down, repaired))
    return run.finish(repaired, both(gone, seen), "Redis SIGKILLed and restarted", recovery="not-degraded")


def registry_down(rig: Rig, delivery: str, load: Load) -> Row:
    """The registry stops; meanwhile the producer switches to a new writer schema the job has not
    cached, so the job cannot decode until the registry is back. Nothing may be dead-lettered."""
    run = Run(rig, "registry-down", delivery, load)
    schema_id, parsed = _register_v2(rig, run.topics.input)
    observed = run.observed(lambda: rig.take_down("registry", kill=False))
    down = time.monotonic()
    run.feed.writer = (schema_id, parsed)
    time.sleep(load.outage_s)
    rig.stack.start(rig.svc("registry"))
    repaired = time.monotonic()
    row = run.finish(
        repaired, observed, "new writer schema while the registry was down", extra_holds=not run.tap.dead
    )
    # Proof that the job met the outage and waited it out: no v2 event was decided while it lasted.
    v2_during = [t for t, r in run.tap.decisions if run.feed.sent_at[r["event_id"]] >= down and t < repaired]
    row.extra = {"v2_events_decided_while_down": len(v2_during), "outage_s": round(repaired - down, 1)}
    row.holds = row.holds and not v2_during
    return row


def schema_change(rig: Rig, delivery: str, load: Load) -> Row:
    """Mid-stream the producer moves to a compatible v2 (an added field with a default)."""
    run = Run(rig, "schema-change", delivery, load)
    run.feed.writer = _register_v2(rig, run.topics.input)
    changed = time.monotonic()
    row = run.finish(changed, "v2 writer", "v1 and v2 writers in one stream", "none", not run.tap.dead)
    # Every event sent after the switch was written with v2: those decided show the change happened.
    row.fault_observed = f"{row.events_after_repair} events written with v2 decided"
    row.holds = row.holds and row.events_after_repair > 0
    return row


def _register_v2(rig: Rig, topic: str) -> tuple[int, Any]:
    v2 = schemas.load_json(schemas.TRANSACTION)
    v2["fields"] = [*v2["fields"], {"name": "promo_code", "type": ["null", "string"], "default": None}]
    text = json.dumps(v2)
    return RegistryClient(rig.registry_url).register(f"{topic}-value", text), fastavro.parse_schema(v2)


def _proxy_fault(mode: Mode, name: str) -> Callable[[Rig, str, Load], Row]:
    def scenario(rig: Rig, delivery: str, load: Load) -> Row:
        run = Run(rig, name, delivery, load)
        before = rig.proxy.handled[mode]
        start = time.monotonic()
        rig.proxy.mode = mode
        time.sleep(load.outage_s)
        rig.proxy.mode = Mode.PASS
        repaired = time.monotonic()
        met = rig.proxy.handled[mode] - before
        if met == 0:
            run.problems.append(f"no request met the proxy in mode {mode.value}")
        proxied = f"proxy {mode.value} for {met} requests" if met else ""
        observed = both(proxied, run.observed(lambda: run.degraded_seen(start, repaired)))
        return run.finish(
            repaired,
            observed,
            f"scoring service {mode.value} for {load.outage_s:.0f}s",
            recovery="not-degraded",
        )

    scenario.__doc__ = f"The scoring service {mode.value} (through the fault proxy) mid-stream."
    return scenario


scoring_slow = _proxy_fault(Mode.SLOW, "scoring-slow")
scoring_500 = _proxy_fault(Mode.ERROR, "scoring-500")


def scoring_down(rig: Rig, delivery: str, load: Load) -> Row:
    """The scoring service's process SIGKILLed, started again after ``outage_s``."""
    run = Run(rig, "scoring-down", delivery, load)
    service = rig.service
    start = time.monotonic()
    rig.stop_service(kill=True)
    if service is None:
        gone = ""
        run.problems.append("the scoring service was not running before the kill")
    elif service.alive or port_open(rig.service_port):
        gone = ""
        run.problems.append(f"pid {service.proc.pid} or port {rig.service_port} survived the kill")
    else:
        gone = f"scoring service (pid {service.proc.pid}) gone, port {rig.service_port} closed"
    time.sleep(load.outage_s)
    rig.start_service()
    repaired = time.monotonic()
    seen = run.observed(lambda: run.degraded_seen(start, repaired))
    return run.finish(repaired, both(gone, seen), "service SIGKILLed and restarted", recovery="not-degraded")


def model_promoted(rig: Rig, delivery: str, load: Load) -> Row:
    """A second model version goes live under load (hot reload): no request may fail and every
    decision names the version that scored it."""
    before = read_pointer(rig.model_dir, LIVE_POINTER)
    candidates = sorted(
        p.name for p in rig.model_dir.iterdir() if card_path(rig.model_dir, p.name).exists() or p.is_dir()
    )
    after = next((v for v in candidates if v != before and (rig.model_dir / v).is_dir()), None)
    if before is None or after is None:
        raise RuntimeError(f"{rig.model_dir} needs a LIVE model and a second version (see faults.__main__)")
    run = Run(rig, "model-promoted", delivery, load)
    write_pointer(rig.model_dir, LIVE_POINTER, after)
    promoted = time.monotonic()
    # The service polls LIVE every second: events sent 3 s after the switch must all meet the new model.
    settled = promoted + 3
    try:
        time.sleep(load.outage_s)
        by_new = sum(1 for _, r in run.tap.decisions if r["model_version"] == after)
        row = run.finish(
            settled,
            f"{by_new} decisions by {after} while streaming" if by_new else "",
            f"LIVE {before} -> {after} under load",
            recovery="none",
        )
    finally:
        write_pointer(rig.model_dir, LIVE_POINTER, before)
    sent_at = run.feed.sent_at
    versions = {r["model_version"] for _, r in run.tap.decisions}
    late = [r["model_version"] for _, r in run.tap.decisions if sent_at[r["event_id"]] > settled]
    row.extra = {"versions": sorted(versions), "from": before, "to": after, "events_after_switch": len(late)}
    row.holds = row.holds and row.degraded == 0 and versions <= {before, after} and set(late) == {after}
    return row


def checkpoints_lost(rig: Rig, delivery: str, load: Load) -> Row:
    """The job is SIGKILLed and its checkpoint folder is lost: the restart must say so, resume
    near the offsets the last checkpoint committed to Kafka, and decide what the lost checkpoint
    held without repeating what was published (flink_jobs/resume.py)."""
    run = Run(rig, "checkpoints-lost", delivery, load)
    killed = run.job
    assert isinstance(killed, ManagedProcess)
    killed.kill()
    wipe(run.checkpoints)
    observed = f"job (pid {killed.proc.pid}) gone, its checkpoint folder deleted"
    if killed.alive or run.checkpoints.exists():
        observed = ""
        run.problems.append(f"job pid {killed.proc.pid} alive or {run.checkpoints} kept after the kill")
    run.job = rig.start_job(run.env, f"job-{run.group}-restart.log")
    repaired = time.monotonic()
    said = all(
        _log_says(run.job.log_path, needle, 120)
        # the launcher's plan, then the operator's count (Python operators log through the JVM)
        for needle in ("no completed checkpoint", "no checkpoint: the last run of group", "resuming:")
    )
    return run.finish(repaired, observed, "job SIGKILLed, checkpoint folder deleted", extra_holds=said)


def consumers_killed(rig: Rig, delivery: str, load: Load) -> Row:
    """The action consumers SIGKILLed mid-batch and restarted: every decision acted on, none twice.

    Users start without a profile, and an approved payment adds one to its user's ``txn_count``
    (fraud_core/action_logic.py), so the sum of ``txn_count`` over the users must equal the approved
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
    observed = f"action consumers (pid {consumers.proc.pid}) gone"
    if consumers.alive:
        observed = ""
        run.problems.append(f"the consumers (pid {consumers.proc.pid}) survived SIGKILL")
    time.sleep(load.outage_s)  # a backlog builds up while they are down
    decision_topics = (run.topics.flagged, run.topics.approved)
    backlog = high_watermarks(rig.bootstrap, decision_topics)
    consumers = spawn("actions", ["-m", "actions"], log, env)
    restarted = time.monotonic()
    try:
        caught_up = wait_committed(rig.bootstrap, run.group, backlog, load.settle_timeout_s)
        row = run.finish(restarted, observed, "action consumers SIGKILLed mid-stream and restarted")
        decided = {r["event_id"]: r for _, r in run.tap.decisions}
        client = redis.Redis.from_url(rig.redis_url)
        done = acted_on(client, list(decided), load.settle_timeout_s)
        users = {r["user_id"] for r in decided.values()}
        profiles = [parse_profile(client.get(profile_key(u))) for u in users]  # type: ignore[arg-type]
        learnt = sum(p.txn_count for p in profiles if p is not None)
        approved = sum(1 for r in decided.values() if r["decision"] == "APPROVED")
        client.close()
    finally:
        consumers.stop()
    sent_at = run.feed.sent_at
    row.extra = {"acted_on": len(done), "approved": approved, "profile_payments_learnt": learnt}
    # The job's duplicates (from the tally) plus actions applied twice.
    row.duplicates += max(learnt - approved, 0)
    row.lost += len(decided.keys() - done)
    row.events_after_repair = sum(1 for e in done if sent_at.get(e, -1.0) >= restarted)
    row.recovery_s = None if caught_up is None else round(caught_up - restarted, 2)
    row.holds = (
        row_holds(
            delivery,
            row.lost,
            row.duplicates,
            row.fault_observed,
            row.events_after_repair,
            learnt == approved,
        )
        and caught_up is not None
    )
    return row


def high_watermarks(bootstrap: str, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """Topic partition -> its high watermark now (what a consumer group must commit to be caught up)."""
    from confluent_kafka import TopicPartition

    from fraud_core.kafka_io import consumer

    c = consumer(bootstrap)
    try:
        out: dict[tuple[str, int], int] = {}
        for topic in topics:
            for part in c.list_topics(topic, timeout=10).topics[topic].partitions:
                out[(topic, part)] = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)[1]
        return out
    finally:
        c.close()


def wait_committed(
    bootstrap: str, group: str, target: dict[tuple[str, int], int], timeout_s: float
) -> float | None:
    """When (monotonic) ``group`` had committed at least ``target`` on every partition: the consumers'
    lag at the restart worked off. None after ``timeout_s``."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout_s
        parts = [TopicPartition(t, p) for t, p in target]
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(parts, timeout=5)}
                if lag_cleared(target, committed):
                    return time.monotonic()
            time.sleep(0.25)
        return None
    finally:
        c.close()


def lag_cleared(target: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]) -> bool:
    """Every partition with records to read has a committed offset at or past its target."""
    return all(committed.get(tp, -1) >= end for tp, end in target.items() if end > 0)


def acted_on(client: Any, events: list[str], timeout_s: float) -> set[str]:
    """The events whose ``actions:done`` marker exists, waiting up to ``timeout_s`` for all of them."""
    deadline = time.monotonic() + timeout_s
    done: set[str] = set()
    while True:
        pending = [e for e in events if e not in done]
        if pending:
            flags = client.pipeline(transaction=False)
            for e in pending:
                flags.exists(f"actions:done:{e}")
            done |= {e for e, hit in zip(pending, flags.execute(), strict=True) if hit}
        if len(done) == len(events) or time.monotonic() > deadline:
            return done
        time.sleep(1)


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
