"""`make up` / `make down` / `make status` as a user runs them: a private stack in its own folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from deploy.local.stack import REPO_ROOT, free_port, port_open
from fraud_core.registry import RegistryClient
from fraud_core.topics import TOPICS

pytestmark = pytest.mark.integration


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.local.stack", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    ports = {"KAFKA_PORT": free_port(), "KAFKA_CONTROLLER_PORT": free_port(), "REGISTRY_PORT": free_port()}
    ports["REDIS_PORT"] = free_port()
    return {**os.environ, "STACK_DIR": str(tmp_path / "state"), **{k: str(v) for k, v in ports.items()}}


def test_up_status_down_lifecycle(stack_env: dict[str, str]) -> None:
    ports = [
        int(stack_env[k]) for k in ("KAFKA_PORT", "REGISTRY_PORT", "REDIS_PORT", "KAFKA_CONTROLLER_PORT")
    ]
    try:
        first = _run("up", stack_env)
        assert first.returncode == 0, first.stderr
        bootstrap = f"127.0.0.1:{stack_env['KAFKA_PORT']}"
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        for spec in TOPICS:
            assert len(topics[spec.name].partitions) == spec.partitions
        registry = RegistryClient(f"http://127.0.0.1:{stack_env['REGISTRY_PORT']}/apis/ccompat/v7")
        assert {s.subject for s in TOPICS} <= set(registry.subjects())
        assert registry.get_compatibility() == "FULL_TRANSITIVE"
        assert {registry.get_compatibility(s.subject) for s in TOPICS} == {"FULL_TRANSITIVE"}
        assert redis.Redis(port=int(stack_env["REDIS_PORT"])).ping()
        pids = [
            Path(stack_env["STACK_DIR"], f"{n}.pid").read_text().split()[0]
            for n in ("kafka", "registry", "redis")
        ]

        second = _run("up", stack_env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert _run("status", stack_env).returncode == 0
    finally:
        down = _run("down", stack_env)
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
        )
    assert not any(port_open(p) for p in ports)
    assert _run("status", stack_env).returncode == 1


def test_port_taken_gives_a_clear_error(stack_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(stack_env["KAFKA_PORT"])))
        squatter.listen()
        try:
            result = _run("up", stack_env)
        finally:
            _run("down", stack_env)
    assert result.returncode == 1
    assert f"port {stack_env['KAFKA_PORT']} is already taken" in result.stderr
