"""What every fault scenario drives: the real stack, the scoring service behind a fault proxy, the
stream job, a paced producer and a reader of everything the job writes.

The oracle (:func:`tally`) is the same for every scenario, in ``make faults`` and in ``make test``:
each event sent must come out as one decision or one dead letter; more than one decision for an
event is a duplicate; none at all is a loss. A row holds only when, besides, the scenario saw its
fault happen (``fault_observed``) and events sent after the repair were decided
(``events_after_repair``): a fault that never hit, or a feed that died with the fault, proves nothing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import schemas
from deploy.local.bootstrap import create_topics
from deploy.local.processes import ManagedProcess, start_job, start_scoring_service
from deploy.local.stack import Service, Stack, free_port, port_open
from faults.proxy import FaultProxy
from flink_jobs.settings import JobSettings
from fraud_core import avro
from fraud_core.cli import child_env
from fraud_core.exceptions import FraudPipelineError, RegistryUnavailable
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka.serde import AvroDeserializer
from fraud_core.kafka_io import AvroPublisher, consumer
from fraud_core.registry import RegistryClient
from fraud_core.simulator import SimConfig, SimEvent, Simulator
from fraud_core.topics import COMPATIBILITY, TopicSpec

DAY_MS = 24 * 3600 * 1000
DECISION_PARTITIONS = 4


class JobHandle(Protocol):
    """A running job: a mini-cluster process, or a job submitted to the standalone cluster."""

    @property
    def alive(self) -> bool: ...

    def tail(self, lines: int = 30) -> str: ...


@dataclass
class Row:
    """One line of the fault table (docs/INTERFACES.md, ``faults/results/latest.json``)."""

    scenario: str
    delivery: str
    events_in: int
    decisions_out: int
    lost: int
    duplicates: int
    dead_letters: int
    degraded: int
    recovery_s: float | None
    holds: bool
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    ran_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # What showed that the fault happened (a process gone, a port closed, a job failure counted,
    # degraded decisions seen, the proxy's mode observed); empty when nothing did.
    fault_observed: str = ""
    # Events sent at or after the repair that were decided (or dead-lettered).
    events_after_repair: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultNotObserved(FraudPipelineError):  # a finding of the suite, reported in its row
    """The scenario could not show that its fault happened (say, the process to kill was not running)."""


def observed_down(name: str, outcome: str, pid_after: int | None, port: int, listening: bool) -> str:
    """What shows that ``name`` went down, from ``Stack.stop``'s answer and what was checked after it.

    Raises:
        FaultNotObserved: the stop found nothing to stop, or the process or its port survived it.
    """
    if not outcome.startswith("stopped"):
        raise FaultNotObserved(f"{name} was not brought down: Stack.stop answered {outcome!r}")
    if pid_after is not None:
        raise FaultNotObserved(f"{name} still runs as pid {pid_after} after {outcome!r}")
    if port and listening:
        raise FaultNotObserved(f"{name}'s port {port} still accepts connections after {outcome!r}")
    return f"{name} {outcome.removeprefix('stopped ')} gone" + (f", port {port} closed" if port else "")


def row_holds(
    delivery: str,
    lost: int,
    duplicates: int,
    fault_observed: str,
    events_after_repair: int,
    extra: bool = True,
) -> bool:
    """docs/INTERFACES.md's ``holds``: nothing lost, nothing duplicated under exactly-once, the fault observed,
    and traffic decided after the repair; ``extra`` is the scenario's own condition."""
    return (
        lost == 0
        and (delivery != "exactly-once" or duplicates == 0)
        and bool(fault_observed)
        and events_after_repair > 0
        and extra
    )


def time_to_healthy(since: float, decisions: list[tuple[float, float, bool]]) -> float | None:
    """Seconds from ``since`` (the repair) until decisions are non-degraded again and stay so: the
    arrival of the first non-degraded decision after the last degraded one, counting only events
    sent at or after ``since`` (each item: arrival, sent, degraded). None when no such decision."""
    after = sorted((arrival, degraded) for arrival, sent, degraded in decisions if sent >= since)
    last_degraded = max((i for i, (_, degraded) in enumerate(after) if degraded), default=-1)
    healthy = after[last_degraded + 1 :]
    return round(max(healthy[0][0] - since, 0.0), 2) if healthy else None


@dataclass(frozen=True)
class Topics:
    input: str
    flagged: str
    approved: str
    dlq: str
    labels: str  # the job's second source (label-driven features); nothing is sent on it here


class Tap:
    """Reads the decision and dead-letter topics (read_committed) in a thread, keeping everything."""

    def __init__(self, bootstrap: str, registry_url: str, topics: Topics) -> None:
        self.topics = topics
        registry = RegistryClient(registry_url)
        self._deserialize = AvroDeserializer(registry.parsed_schema)
        self._deserialize_txn = AvroDeserializer(registry.parsed_schema, schemas.TRANSACTION)
        self._consumer = consumer(bootstrap)
        # Assigned, not subscribed: a group would rebalance when the broker restarts and, with no
        # committed offsets, read everything again, which would look like duplicates.
        # Partition counts as created by Rig.topics (metadata can lag a topic just created).
        parts = {topics.flagged: DECISION_PARTITIONS, topics.approved: DECISION_PARTITIONS, topics.dlq: 1}
        self._consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t, n in parts.items() for p in range(n)]
        )
        self.errors: list[str] = []
        self._seen: set[tuple[Any, ...]] = set()
        self.decisions: list[tuple[float, dict[str, Any]]] = []  # (arrival, record)
        self.dead: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._read()
            except Exception as exc:  # the tap must outlive any fault it watches
                self.errors.append(repr(exc))
                time.sleep(0.5)

    def _read(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error() or msg.value() is None:
                    continue
                position = (msg.topic(), msg.partition(), msg.offset())
                if position in self._seen:  # read again after a reconnect: the same record
                    continue
                record = self._decode(msg.value())
                self._seen.add(position)
                if msg.topic() == self.topics.dlq:
                    self.dead.append(record)
                else:
                    self.decisions.append((time.monotonic(), record))

    def _decode(self, value: bytes | None) -> dict[str, Any]:
        """Decode, waiting out a registry outage (the registry-down scenario stops it)."""
        for _ in range(600):
            try:
                return self._deserialize(value)
            except RegistryUnavailable:
                time.sleep(0.5)
        return self._deserialize(value)

    def decided(self) -> set[str]:
        return {r["event_id"] for _, r in self.decisions}

    def wait_for(self, ids: set[str], timeout_s: float, idle_s: float = 3.0) -> None:
        """Until every id has a decision or a dead letter (or ``timeout_s``), then ``idle_s`` of quiet."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not ids <= self.decided() | self.dead_ids():
            time.sleep(0.2)
        count = -1
        while count != len(self.decisions) + len(self.dead):
            count = len(self.decisions) + len(self.dead)
            time.sleep(idle_s)

    def dead_ids(self) -> set[str]:
        out = set()
        for d in self.dead:
            try:
                out.add(self._deserialize_txn(d["value"])["event_id"])
            except Exception:
                continue
        return out

    def first_arrival_after(self, since: float, sent_at: dict[str, float]) -> float | None:
        """Seconds from ``since`` to the first decision of an event sent at or after ``since``."""
        times = [t for t, r in self.decisions if sent_at.get(r["event_id"], -1) >= since]
        return round(min(times) - since, 2) if times else None

    def healthy_after(self, since: float, sent_at: dict[str, float]) -> float | None:
        """:func:`time_to_healthy` of this tap's decisions: until decisions are not degraded again."""
        items = [(t, sent_at.get(r["event_id"], -1.0), bool(r["degraded"])) for t, r in self.decisions]
        return time_to_healthy(since, items)

    def degraded_between(self, start: float, end: float, sent_at: dict[str, float]) -> int:
        """Degraded decisions of events sent in [start, end): the fault seen in the output."""
        return sum(
            1 for _, r in self.decisions if r["degraded"] and start <= sent_at.get(r["event_id"], -1.0) < end
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


class Feed:
    """Publishes simulated events at ``rate_eps`` in a thread; records when each was sent."""

    def __init__(self, bootstrap: str, registry_url: str, topic: str, seed: int) -> None:
        simulator = Simulator(SimConfig(seed=seed, n_users=300, rate_eps=50.0))
        self.profiles = simulator.profiles()
        self._events: Iterator[SimEvent] = simulator.events()
        self.publisher = AvroPublisher(bootstrap, registry_url)
        self.topic = topic
        self.sent_at: dict[str, float] = {}
        self.writer: tuple[int, Any] | None = None  # (schema id, parsed schema) once switched
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def prime(self, count: int) -> None:
        """Send ``count`` events now, so that the job shows it runs before the paced stream starts."""
        for _ in range(count):
            self._send_one()
        self.publisher.producer.flush(120)

    def start(self, rate_eps: float) -> None:
        """Stream at ``rate_eps`` until :meth:`stop`: the fault and its repair happen mid-stream."""
        self._thread = threading.Thread(target=self._run, args=(rate_eps,), name="feed", daemon=True)
        self._thread.start()

    def _send_one(self) -> None:
        txn = next(self._events).txn
        record = txn.to_record()
        if self.writer is None:
            value = self.publisher.encode(self.topic, schemas.TRANSACTION, record)
        else:
            schema_id, schema = self.writer
            value = avro.encode(schema_id, schema, {**record, "promo_code": f"P{len(self.sent_at) % 7}"})
        self.publisher.send_raw(self.topic, txn.user_id.encode(), value, new_headers())
        self.sent_at[txn.event_id] = time.monotonic()

    def _run(self, rate_eps: float) -> None:
        t0 = time.monotonic()
        i = 0
        while not self._stopping.is_set():
            self._send_one()
            i += 1
            lag = t0 + i / rate_eps - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        self.publisher.producer.flush(120)

    def stop(self) -> None:
        """Stop streaming and wait until Kafka has every event sent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def sent(self) -> set[str]:
        return set(self.sent_at)


class Rig:
    """The stack (its services can be stopped, killed and started), the scoring service behind a
    :class:`FaultProxy`, and jobs started on a scenario's own topics."""

    def __init__(self, stack: Stack, model_dir: Path, work_dir: Path, api_key: str) -> None:
        self.stack = stack
        self.model_dir = model_dir
        self.work_dir = work_dir
        self.api_key = api_key
        self.service_port = free_port()
        self.service: ManagedProcess | None = None
        self.proxy = FaultProxy("127.0.0.1", self.service_port).start()
        self.jobs: list[ManagedProcess] = []

    @property
    def bootstrap(self) -> str:
        return self.stack.config.bootstrap

    @property
    def registry_url(self) -> str:
        return self.stack.config.registry_url

    @property
    def redis_url(self) -> str:
        return self.stack.config.redis_url

    def flush_redis(self) -> None:
        """Forget profiles, blocklist and action markers left by earlier scenarios."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.close()

    def svc(self, name: str) -> Service:
        return next(s for s in self.stack.services if s.name == name)

    def take_down(self, name: str, kill: bool = True) -> str:
        """SIGKILL (or stop) stack service ``name`` and prove it: its PID gone, its port closed.

        Raises:
            FaultNotObserved: it was not running (``Stack.stop`` said "not running"), or it still
                runs or still listens afterwards.
        """
        svc = self.svc(name)
        outcome = self.stack.kill(svc) if kill else self.stack.stop(svc)
        # A SIGKILLed JVM takes a moment to be reaped and to release its port: wait for both,
        # a few seconds at most, before judging.
        deadline = time.monotonic() + 10
        while (self.stack.pid(svc) is not None or port_open(svc.port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return observed_down(name, outcome, self.stack.pid(svc), svc.port, port_open(svc.port))

    def start_service(self) -> None:
        self.service = start_scoring_service(
            self.model_dir, self.service_port, self.work_dir / "scoring.log", self.api_key
        )

    def stop_service(self, kill: bool = False) -> None:
        if self.service is not None:
            if kill:
                self.service.kill()
            else:
                self.service.stop()
            self.service = None

    def topics(self, name: str) -> Topics:
        tag = f"{name}.{uuid.uuid4().hex[:6]}"
        specs = [
            TopicSpec(f"in.{tag}", 4, DAY_MS, schemas.TRANSACTION),
            TopicSpec(f"flagged.{tag}", DECISION_PARTITIONS, DAY_MS, schemas.DECISION),
            TopicSpec(f"approved.{tag}", DECISION_PARTITIONS, DAY_MS, schemas.DECISION),
            TopicSpec(f"dlq.{tag}", 1, DAY_MS, schemas.DEAD_LETTER),
            TopicSpec(f"labels.{tag}", 4, DAY_MS, schemas.LABEL),
        ]
        create_topics(self.bootstrap, specs)
        client = RegistryClient(self.registry_url)
        for spec in specs:
            client.register(spec.subject, schemas.load_text(spec.schema))
            client.set_compatibility(COMPATIBILITY, spec.subject)
        return Topics(*(s.name for s in specs))

    def job_env(self, topics: Topics, delivery: str, group: str, checkpoints: Path) -> dict[str, str]:
        return child_env(
            JobSettings,
            APP_ENV="test",
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            SCHEMA_REGISTRY_URL=self.registry_url,
            REDIS_URL=self.redis_url,
            SCORING_URL=self.proxy.url,
            SCORING_API_KEY=self.api_key,
            INPUT_TOPIC=topics.input,
            FLAGGED_TOPIC=topics.flagged,
            APPROVED_TOPIC=topics.approved,
            DLQ_TOPIC=topics.dlq,
            LABELS_TOPIC=topics.labels,
            GROUP_ID=group,
            DELIVERY=delivery,
            TRANSACTIONAL_ID_PREFIX=group,
            CHECKPOINT_DIR=checkpoints.as_uri(),
            METRICS_PORT=0,
        )

    def start_job(self, env: dict[str, str], log_name: str) -> ManagedProcess:
        job = start_job(env, [], self.work_dir / log_name)
        self.jobs.append(job)
        return job

    def wait_running(self, job: JobHandle, tap: Tap, timeout_s: float = 300) -> None:
        """Until the job has decided something, so faults hit a running job, not its start-up."""
        deadline = time.monotonic() + timeout_s
        while not tap.decisions:
            if not job.alive:
                raise RuntimeError(f"the job exited at start:\n{job.tail(40)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no decision after {timeout_s:.0f}s:\n{job.tail(40)}")
            time.sleep(0.2)

    def close(self) -> None:
        """Stop every process the rig started; each step runs even if another one fails."""
        for step in [
            *(lambda j=j: j.stop(timeout_s=10) for j in self.jobs),
            self.stop_service,
            self.proxy.stop,
        ]:
            with contextlib.suppress(Exception):
                step()


def tally(
    scenario: str,
    delivery: str,
    sent_at: dict[str, float],
    decisions: list[dict[str, Any]],
    dead: set[str],
    recovery_s: float | None,
    repaired_at: float,
    fault_observed: str,
    note: str = "",
    extra_holds: bool = True,
) -> Row:
    """The oracle: lost, duplicated, dead-lettered and degraded, from what was sent (event id -> send
    time), what came out (decision records, dead-lettered event ids) and the scenario's own findings;
    ``events_after_repair`` counts the events sent at or after ``repaired_at`` that came out."""
    ids = [r["event_id"] for r in decisions]
    out = set(ids) | dead
    lost = len(sent_at.keys() - out)
    duplicates = len(ids) - len(set(ids))
    after = sum(1 for e, t in sent_at.items() if t >= repaired_at and e in out)
    return Row(
        scenario=scenario,
        delivery=delivery,
        events_in=len(sent_at),
        decisions_out=len(ids),
        lost=lost,
        duplicates=duplicates,
        dead_letters=len(dead),
        degraded=sum(1 for r in decisions if r["degraded"]),
        recovery_s=recovery_s,
        holds=row_holds(delivery, lost, duplicates, fault_observed, after, extra_holds),
        note=note,
        fault_observed=fault_observed,
        events_after_repair=after,
    )


def merged_with_previous(rows: list[Row], path: Path) -> list[Row]:
    """``rows``, plus the rows of the previous ``latest.json`` for scenarios not run this time
    (a partial run, ``--scenario``/``--delivery``, updates the table instead of replacing it).

    A kept row keeps its own ``ran_at``, so it never passes for a result of this run. A previous
    row without its own ``ran_at`` or ``fault_observed`` comes from before those were recorded and
    cannot show that its fault happened: it is dropped, not re-dated.
    """
    try:
        data = json.loads(path.read_text())
        previous = [
            Row(**r) for r in data["scenarios"] if r.get("ran_at") and r.get("fault_observed") is not None
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return rows
    ran = {(r.scenario, r.delivery) for r in rows}
    fresh = {(r.scenario, r.delivery): r for r in rows}
    order = [(r.scenario, r.delivery) for r in previous] + [
        k for k in fresh if k not in {(p.scenario, p.delivery) for p in previous}
    ]
    kept = {(r.scenario, r.delivery): r for r in previous if (r.scenario, r.delivery) not in ran}
    return [fresh.get(k) or kept[k] for k in order]


def write_results(rows: list[Row], started_at: str, out_dir: Path) -> tuple[Path, Path]:
    """``latest.json`` (docs/INTERFACES.md's shape) and ``latest.md`` (the same table for people)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "latest.json"
    path.write_text(
        json.dumps({"started_at": started_at, "scenarios": [r.to_json() for r in rows]}, indent=2)
    )
    md = out_dir / "latest.md"
    md.write_text(markdown(rows, started_at))
    return path, md


def markdown(rows: list[Row], started_at: str) -> str:
    """The table for people; each row shows when it ran (a partial run keeps earlier rows)."""
    head = (
        "| scenario | delivery | ran at | events in | decisions out | lost | duplicated | dead letters "
        "| degraded | recovery (s) | after repair | fault observed | holds | note |"
    )
    lines = [f"Fault suite, run started {started_at}", "", head, "|" + "---|" * 14]
    for r in rows:
        recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        lines.append(
            f"| {r.scenario} | {r.delivery} | {r.ran_at} | {r.events_in} | {r.decisions_out} | {r.lost} "
            f"| {r.duplicates} | {r.dead_letters} | {r.degraded} | {recovery} | {r.events_after_repair} "
            f"| {r.fault_observed or '**not observed**'} | {'yes' if r.holds else '**NO**'} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
