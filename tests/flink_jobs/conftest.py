"""Fixtures to run the real scoring job (a PyFlink mini-cluster in its own process) in tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import schemas
from deploy.local.processes import ManagedProcess, start_job


@dataclass(frozen=True)
class JobTopics:
    input: str
    flagged: str
    approved: str
    dlq: str

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
        )

    return make


@pytest.fixture(scope="session")
def run_job(
    stack, scoring_service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ManagedProcess]]:  # type: ignore[no-untyped-def]
    """Start the job on given topics; every job started is stopped at the end of the session."""
    started: list[ManagedProcess] = []

    def run(
        topics: JobTopics,
        *args: str,
        scoring_url: str | None = None,
        redis_url: str | None = None,
        checkpoint_dir: Path | None = None,
        group_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        logs = tmp_path_factory.mktemp("job")
        job_env = {
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
            "GROUP_ID": group_id or f"job-{uuid.uuid4().hex[:8]}",
            "CHECKPOINT_DIR": str(checkpoint_dir or logs / "checkpoints"),
            "METRICS_PORT": "0",
            "START_FROM": "earliest",
            **(env or {}),
        }
        process = start_job(job_env, list(args), logs / "job.log")
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop(timeout_s=10)
