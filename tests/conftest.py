"""Session fixtures: one real local stack (Kafka, Apicurio Registry, Redis) on free ports for the
whole test session, a unique topic per test, one trained model registry and the scoring service
(tests/services.py). See tests/README.md for the tiers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from threadpoolctl import threadpool_limits

import schemas
from deploy.local.bootstrap import create_topics
from deploy.local.processes import ManagedProcess, ensure_model, start_job
from deploy.local.stack import Stack, StackConfig, free_port
from flink_jobs.settings import JobSettings
from fraud_core.cli import child_env
from fraud_core.decision import scoring_request
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.model_folder import CARD_FILE, LIVE_POINTER, SHADOW_POINTER, write_pointer
from fraud_core.registry import RegistryClient
from fraud_core.simulator import SimConfig, Simulator
from fraud_core.topics import COMPATIBILITY, TopicSpec
from tests.services import Registry, Service, registry_copy, start_service, stop_service, train_small
from tests.tiers import heaviest_tier_first, process_fixture, reaches_a_process_fixture

# Settings have no APP_ENV default (they refuse to start without one): the suite runs in test mode
# unless make already set local. Child processes inherit it.
os.environ.setdefault("APP_ENV", "test")

# The suite's JVMs started per test (PyFlink's mini-cluster, the cluster's JobManager and
# TaskManagers: PyFlink's launcher and Flink's scripts read JVM_ARGS) live for seconds to a minute
# over a few thousand events: they compile with C1 only, so the 2 cores are not spent on C2
# compilations that never pay back. Behaviour is the same; only the JIT tier differs. Measured
# 2026-12-03, tests/flink_jobs/test_scoring_job.py + test_feature_parity.py alternated twice:
# 158-160 s against 169-175 s. The long-lived stack (Kafka, the registry) is untouched, and so are
# production, `make demo` and the bench. Set JVM_ARGS yourself to override.
os.environ.setdefault("JVM_ARGS", "-XX:TieredStopAtLevel=1")


@pytest.fixture(scope="session", autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """Models fitted in the test process use one OpenMP thread: on this shared 2-core machine a
    second thread spinning against the other work turned a 0.5 s fit into 8 s."""
    with threadpool_limits(limits=1):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reaches a fixture declared with ``process_fixture`` (tests/tiers.py) is in the
    integration tier whatever its file says, so ``pytest -m "not integration"`` starts no process and
    trains nothing. Under pytest-xdist every worker collects and marks for itself, before ``-m``
    deselects (this hook runs ahead of pytest's own), and the files are then put in tier order."""
    for item in items:
        if reaches_a_process_fixture(item):
            item.add_marker(pytest.mark.integration)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = heaviest_tier_first(items)


@dataclass(frozen=True)
class RunningStack:
    bootstrap: str
    registry_url: str
    redis_url: str
    config: StackConfig


@process_fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The real services, started once per session in a private state folder on free ports."""
    state: Path = tmp_path_factory.mktemp("stack")
    config = StackConfig(
        state_dir=state,
        kafka_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
        redis_port=free_port(),
    )
    running = Stack(config)
    try:
        for svc in running.services:
            running.start(svc)
        RegistryClient(config.registry_url).set_compatibility(COMPATIBILITY)
        yield RunningStack(config.bootstrap, config.registry_url, config.redis_url, config)
    finally:
        # Killed, not stopped: the session's stack is thrown away, and Kafka's and the registry's
        # clean shutdowns took a minute of every run.
        for svc in reversed(running.services):
            running.kill(svc)


@pytest.fixture(scope="session")
def make_topic(stack: RunningStack) -> Callable[..., str]:
    """Create a uniquely named topic and register ``schema`` under ``<topic>-value``; returns the name."""

    def make(prefix: str = "t", partitions: int = 4, schema: str | None = schemas.TRANSACTION) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        spec = TopicSpec(name, partitions, 24 * 3600 * 1000, schema or schemas.TRANSACTION)
        create_topics(stack.bootstrap, [spec])
        if schema is not None:
            client = RegistryClient(stack.registry_url)
            client.register(spec.subject, schemas.load_text(schema))
            client.set_compatibility(COMPATIBILITY, spec.subject)
        return name

    return make


@process_fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The session's one trained model registry. LIVE: ``make model``'s trainer as a process (seed 7,
    60,000 events), the model every job and HTTP test scores with; SHADOW: a second, smaller version
    (seed 8) for the shadow, hot-reload and two-model backtest tests; ``bad``: a copy of LIVE whose
    card lists one feature too few. Tests that move pointers work on copies (``registry_copy``)."""
    path = tmp_path_factory.mktemp("models")
    ensure_model(path, events=60_000, seed=7)
    live = (path / LIVE_POINTER).read_text(encoding="utf-8").strip()
    shadow = train_small(path, seed=8, promote=False)
    write_pointer(path, SHADOW_POINTER, shadow)
    bad = "bad-feature-list"
    shutil.copytree(path / live, path / bad)
    card = json.loads((path / bad / CARD_FILE).read_text())
    card.update(version=bad, features=list(FEATURE_NAMES[:-1]))
    (path / bad / CARD_FILE).write_text(json.dumps(card))
    return Registry(path, live, shadow, bad)


@pytest.fixture(scope="session")
def model_dir(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's LIVE model alone (no SHADOW pointer): what the job's scoring service serves."""
    return registry_copy(registry, tmp_path_factory.mktemp("live-model"), [registry.live])


@process_fixture(scope="session")
def scoring_service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The scoring service the stream job calls: LIVE only (a shadow score would change every decision
    record the job tests compare), the settings' default limits."""
    service = start_service(model_dir, tmp_path_factory.mktemp("logs") / "scoring.log", small_limits=False)
    try:
        yield service
    finally:
        service.process.stop()


@process_fixture(scope="session")
def service(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The scoring service the HTTP tests call: LIVE and SHADOW as trained, small limits; tests must
    not move its pointers (``private_service`` is for that)."""
    svc = start_service(registry.path, tmp_path_factory.mktemp("logs") / "service.log")
    yield svc
    assert stop_service(svc) in (0, -signal.SIGTERM)


@process_fixture()
def private_service(registry: Registry, tmp_path: Path) -> Iterator[Service]:
    """An instance over a private copy of every version (LIVE as trained, no SHADOW), for tests that
    switch LIVE."""
    model_dir = registry_copy(registry, tmp_path / "models", [registry.live, registry.shadow, registry.bad])
    svc = start_service(model_dir, tmp_path / "service.log")
    yield svc
    stop_service(svc)


@pytest.fixture(scope="session")
def sample_items() -> list[dict[str, Any]]:
    """Request items of an unseen simulator stream, features from the shared code."""
    from inference_service.training.train import replay  # sklearn: 1 s to import, for integration only

    sim = Simulator(SimConfig(seed=11, n_users=500))
    events = list(sim.events(count=3000))
    data = replay(events, sim.profiles())
    return [
        scoring_request(ev.txn, dict(zip(FEATURE_NAMES, row, strict=True)))
        for ev, row in zip(events, data.x.tolist(), strict=True)
    ]


@dataclass(frozen=True)
class JobTopics:
    input: str
    flagged: str
    approved: str
    dlq: str
    labels: str = ""  # the job's second source; empty: the stack's payments.labels

    @property
    def outputs(self) -> list[str]:
        return [self.flagged, self.approved, self.dlq]


@pytest.fixture(scope="session")
def job_topics(make_topic: Callable[..., str]) -> Callable[..., JobTopics]:
    def make(input_topic: str | None = None) -> JobTopics:
        return JobTopics(
            input_topic or make_topic("in", 4, schemas.TRANSACTION),
            make_topic("flagged", 4, schemas.DECISION),
            make_topic("approved", 4, schemas.DECISION),
            make_topic("dlq", 1, schemas.DEAD_LETTER),
            make_topic("labels", 4, schemas.LABEL),
        )

    return make


@pytest.fixture(scope="session")
def job_env(stack, scoring_service) -> Callable[..., dict[str, str]]:  # type: ignore[no-untyped-def]
    """The job's environment for given topics, on the session stack and scoring service."""

    def make(
        topics: JobTopics,
        checkpoint_dir: Path,
        scoring_url: str | None = None,
        redis_url: str | None = None,
        group_id: str | None = None,
        env: Mapping[str, object] | None = None,
    ) -> dict[str, str]:
        # Validated by the job's settings class here: a mistyped name fails the test at once.
        return child_env(
            JobSettings,
            **{
                "APP_ENV": "test",
                "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                "SCHEMA_REGISTRY_URL": stack.registry_url,
                "REDIS_URL": redis_url or stack.redis_url,
                "SCORING_URL": scoring_url or scoring_service.url,
                "SCORING_API_KEY": scoring_service.api_key,
                "INPUT_TOPIC": topics.input,
                "FLAGGED_TOPIC": topics.flagged,
                "APPROVED_TOPIC": topics.approved,
                "DLQ_TOPIC": topics.dlq,
                **({"LABELS_TOPIC": topics.labels} if topics.labels else {}),
                "GROUP_ID": group_id or f"job-{uuid.uuid4().hex[:8]}",
                "CHECKPOINT_DIR": str(checkpoint_dir),
                "METRICS_PORT": 0,
                "START_FROM": "earliest",
                **(env or {}),
            },
        )

    return make


# Jobs ``run_job`` started and not yet killed; the module that started them kills them when it ends.
_running_jobs: list[ManagedProcess] = []


@pytest.fixture(scope="module", autouse=True)
def jobs_end_with_their_module() -> Iterator[None]:
    """Kill, when a test module ends, every job ``run_job`` started in it. No job is shared across
    modules, and an idle job left running to the end of the session still took 8-11 % of a core
    (its mini-cluster's timers, checkpoints and Kafka polls; six such JVMs measured over 10 s late
    in a serial run, together over a quarter of this 2-core machine). Autouse and module-scoped, it
    is torn down after the module's own fixtures that hold the jobs; it asks for no fixture, so it
    changes no test's tier."""
    yield
    # Killed, not stopped, like the session's stack they read from: stopping the jobs one after
    # another took over a minute of every run. Tests that check a clean stop do it themselves.
    while _running_jobs:
        _running_jobs.pop().kill()


@pytest.fixture(scope="session")
def run_job(
    job_env: Callable[..., dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., ManagedProcess]:
    """Start the job on given topics; every job started is killed at the end of its test module
    (``jobs_end_with_their_module``)."""

    def run(
        topics: JobTopics,
        *args: str,
        scoring_url: str | None = None,
        redis_url: str | None = None,
        checkpoint_dir: Path | None = None,
        group_id: str | None = None,
        env: Mapping[str, object] | None = None,
    ) -> ManagedProcess:
        logs = tmp_path_factory.mktemp("job")
        variables = job_env(
            topics, checkpoint_dir or logs / "checkpoints", scoring_url, redis_url, group_id, env
        )
        process = start_job(variables, list(args), logs / "job.log")
        _running_jobs.append(process)
        return process

    return run
