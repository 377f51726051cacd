"""The job on a real standalone Flink session cluster (one JobManager, two TaskManagers, as
`make cluster` starts it), submitted with `flink run -py` as a user does, and a TaskManager
SIGKILLed mid-stream under exactly-once delivery.

The job runs with parallelism 2, one slot on each TaskManager. After the kill it restarts from its
last checkpoint on the other TaskManager's two slots, without waiting for a replacement; the
killed one is restarted at the end only to show that it rejoins.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.local.cluster import Cluster
from deploy.local.stack import free_port
from fraud_core.flink_cluster import ClusterConfig, SubmittedJob, submit_job
from fraud_core.rules import FALLBACK_VERSION
from producers.profiles import seed_profiles
from tests.streams import Collector, Feed

pytestmark = [pytest.mark.integration, pytest.mark.flink]

EVENTS = 1500


@pytest.fixture
def cluster(tmp_path: Path, scoring_service) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    """A private cluster: its own state folder and free ports, stopped by PID at the end."""
    config = ClusterConfig(
        state_dir=tmp_path / "flink-cluster", rest_port=free_port(), rpc_port=free_port(), metrics_ports=""
    )
    # The operators read the API key from the TaskManagers' environment, not from the job graph.
    running = Cluster(config, env={"SCORING_API_KEY": scoring_service.api_key})
    try:
        running.up()
        yield running
    finally:
        running.down()


def _busy_taskmanagers(cluster: Cluster) -> set[str]:
    return {tm["id"] for tm in cluster.taskmanagers() if tm["freeSlots"] < tm["slotsNumber"]}


@pytest.mark.timeout(1500)
def test_exactly_once_survives_a_taskmanager_kill(  # type: ignore[no-untyped-def]
    stack,
    scoring_service,
    job_topics,
    job_env: Callable[..., dict[str, str]],
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    topics = job_topics()
    feed = Feed(stack, topics.input, seed=41)
    seed_profiles(stack.redis_url, feed.profiles)
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    env = job_env(
        topics,
        cluster.config.job_checkpoint_dir(name),
        env={
            "JOB_NAME": name,
            "CHECKPOINT_INTERVAL_MS": "1000",
            "TRANSACTIONAL_ID_PREFIX": f"eo-{uuid.uuid4().hex[:8]}",
        },
    )
    args = ["--delivery", "exactly-once", "--parallelism", "2"]
    job: SubmittedJob = submit_job(cluster.config, env, args, tmp_path / "flink-run.log")
    collector = Collector(stack, [topics.flagged, topics.approved])
    sent: set[str] = set()
    producing = threading.Thread(target=lambda: sent.update(feed.wave(EVENTS, pause_s=0.004)))
    try:
        job.wait_running(timeout_s=300)
        first, second = (cluster.taskmanager_resource_id(i) for i in (1, 2))
        assert _busy_taskmanagers(cluster) == {first, second}  # a share of the job on each

        producing.start()
        while len(collector.records) < 300:  # some transactions committed before the kill
            collector.drain(idle_s=0.5)
            # A restart before the kill (a missed heartbeat on a loaded machine) is no failure of
            # exactly-once; the oracle below still demands every event once.
            assert job.state() not in ("FAILED", "CANCELED", "FINISHED"), job.web_url
        cluster.kill_taskmanager(1)
        producing.join()

        collector.wait_for(sent, timeout_s=600)
        collector.drain(idle_s=5)
        assert job.state() in ("RUNNING", "RESTARTING"), job.web_url
        assert job.failures(), "the job did not notice the lost TaskManager"
        assert cluster.taskmanager_pids()[1] is None
        assert _busy_taskmanagers(cluster) <= {second}  # the lost TaskManager holds no part of the job

        cluster.start_taskmanager(1)
        assert cluster.taskmanager_resource_id(1) in {tm["id"] for tm in cluster.taskmanagers()}
    finally:
        if producing.is_alive():
            producing.join()
        collector.close()
        job.cancel()
    ids = [r["event_id"] for r in collector.records]
    assert len(ids) == len(set(ids)) == EVENTS  # nothing lost, nothing doubled
    # Scored by the model: the TaskManagers had the API key. Without it every decision falls back to
    # the rules (model_version fallback-rules). A Redis read timing out on this loaded machine marks
    # a decision degraded too, but keeps the model's score, so only the scorer's fallback counts.
    fallback = [r["event_id"] for r in collector.records if r["model_version"] == FALLBACK_VERSION]
    assert len(fallback) < EVENTS // 2, f"{len(fallback)} of {EVENTS} decisions without the model"
