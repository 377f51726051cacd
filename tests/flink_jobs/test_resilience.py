"""The job under failure: scoring service and Redis going away and coming back, and a hard crash
of the whole job with exactly-once delivery.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.local.processes import ManagedProcess, start_scoring_service
from deploy.local.stack import Stack, StackConfig, free_port
from fraud_core.rules import FALLBACK_VERSION
from producers.profiles import seed_profiles
from tests.streams import Collector, Feed

pytestmark = [pytest.mark.integration, pytest.mark.flink]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[Stack, Any]]:
    stack = Stack(StackConfig(state_dir=tmp_path / "redis", redis_port=free_port()))
    redis_service = next(s for s in stack.services if s.name == "redis")
    stack.start(redis_service)
    yield stack, redis_service
    stack.stop(redis_service)


def test_degraded_while_scoring_or_redis_is_down_and_recovery(
    stack,
    scoring_service,
    model_dir,
    job_topics,
    run_job,
    private_redis,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    redis_stack, redis_service = private_redis
    port = free_port()

    def start_service() -> ManagedProcess:
        return start_scoring_service(model_dir, port, tmp_path / "scoring.log", scoring_service.api_key)

    service = start_service()
    topics = job_topics()
    feed = Feed(stack, topics.input, seed=21)
    seed_profiles(redis_stack.config.redis_url, feed.profiles)
    run_job(topics, scoring_url=f"http://127.0.0.1:{port}", redis_url=redis_stack.config.redis_url)
    collector = Collector(stack, [topics.flagged, topics.approved])
    try:
        healthy = collector.wait_for(feed.wave(100), timeout_s=180)
        assert not any(r["degraded"] for r in healthy.values())

        service.stop()
        down = collector.wait_for(feed.wave(100))
        assert all(r["degraded"] and r["model_version"] == FALLBACK_VERSION for r in down.values())

        service = start_service()
        _wait_until_not_degraded(collector, feed)
        back = collector.wait_for(feed.wave(100))
        assert not any(r["degraded"] for r in back.values())

        redis_stack.stop(redis_service)
        no_redis = collector.wait_for(feed.wave(100))
        assert all(r["degraded"] and r["model_version"] != FALLBACK_VERSION for r in no_redis.values())
        assert all(r["features"]["profile_missing"] == 1.0 for r in no_redis.values())

        redis_stack.start(redis_service)
        seed_profiles(redis_stack.config.redis_url, feed.profiles)
        _wait_until_not_degraded(collector, feed)
        collector.drain(idle_s=3)
    finally:
        service.stop()
        collector.close()
    ids = [r["event_id"] for r in collector.records]
    assert len(ids) == len(set(ids)) == feed.sent  # nothing lost, nothing doubled


def _wait_until_not_degraded(collector: Collector, feed: Feed, attempts: int = 30) -> None:
    for _ in range(attempts):
        wave = collector.wait_for(feed.wave(10))
        if not any(r["degraded"] for r in wave.values()):
            return
        time.sleep(0.5)
    pytest.fail("decisions stayed degraded after the dependency came back")


def test_exactly_once_survives_a_hard_crash(stack, job_topics, run_job, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    topics = job_topics()
    feed = Feed(stack, topics.input, seed=31)
    seed_profiles(stack.redis_url, feed.profiles)
    shared = {
        "group_id": f"eo-{uuid.uuid4().hex[:8]}",
        "env": {
            "CHECKPOINT_INTERVAL_MS": "1000",
            "TRANSACTIONAL_ID_PREFIX": f"eo-{uuid.uuid4().hex[:8]}",
            # A URI, as on a cluster (s3://, hdfs://): it must reach Flink unchanged.
            "CHECKPOINT_DIR": (tmp_path / "checkpoints").as_uri(),
        },
    }
    job: ManagedProcess = run_job(topics, "--delivery", "exactly-once", **shared)
    collector = Collector(stack, [topics.flagged, topics.approved])
    sent: set[str] = set()
    producing = threading.Thread(target=lambda: sent.update(feed.wave(1500, pause_s=0.004)))
    producing.start()
    try:
        while len(collector.records) < 300:  # some transactions committed before the crash
            collector.drain(idle_s=0.5)
            assert job.alive, job.tail(40)
        job.kill()
        producing.join()
        restarted = run_job(topics, "--delivery", "exactly-once", **shared)
        # Sent after the crash: only the restarted job can decide these.
        sent.update(feed.wave(300))
        collector.wait_for(sent, timeout_s=300)
        collector.drain(idle_s=5)
        assert restarted.alive, restarted.tail(40)
        assert "restoring from checkpoint" in restarted.log_path.read_text(errors="replace"), restarted.tail(
            40
        )
        assert list((tmp_path / "checkpoints").glob("*/chk-*/_metadata"))
    finally:
        producing.join()
        collector.close()
    ids = [r["event_id"] for r in collector.records]
    assert len(ids) == len(set(ids)) == 1800
