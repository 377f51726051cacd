"""Unit tier: the standalone cluster's generated configuration and the `--cluster` submission
command, without starting any process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from deploy.local.cluster import Cluster, flink_conf
from deploy.local.stack import REPO_ROOT
from flink_jobs import scoring_job
from fraud_core.flink_cluster import JOB_FILE, ClusterConfig, flink_run_command, flink_run_env

# Kafka, its controller, the registry, Redis, the scoring service, job metrics, the console.
LOCAL_STACK_PORTS = {9092, 9093, 8081, 6379, 8000, 9249, 8090}


def test_default_ports_and_state_folder() -> None:
    config = ClusterConfig()
    low, high = (int(p) for p in config.metrics_ports.split("-"))
    assert config.rest_port == 8091
    assert not {config.rest_port, config.rpc_port, *range(low, high + 1)} & LOCAL_STACK_PORTS
    assert config.state_dir == REPO_ROOT / ".stack" / "state" / "flink-cluster"
    assert (config.taskmanagers, config.slots_per_taskmanager) == (2, 2)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLINK_REST_PORT", "18091")
    monkeypatch.setenv("FLINK_RPC_PORT", "16123")
    monkeypatch.setenv("FLINK_METRICS_PORTS", "")
    monkeypatch.setenv("FLINK_CLUSTER_DIR", str(tmp_path))
    config = ClusterConfig.from_env()
    assert (config.rest_port, config.rpc_port, config.metrics_ports) == (18091, 16123, "")
    assert config.state_dir == tmp_path
    assert "metrics.reporter.prom.port" not in flink_conf(config)


def test_generated_conf(tmp_path: Path) -> None:
    config = ClusterConfig(state_dir=tmp_path / "flink", rest_port=18091, rpc_port=16123)
    conf = flink_conf(config)
    assert conf["rest.port"] == "18091"
    assert conf["jobmanager.rpc.port"] == "16123"
    assert conf["taskmanager.numberOfTaskSlots"] == "2"
    assert conf["taskmanager.memory.process.size"] == "1024m"
    assert conf["taskmanager.load-balance.mode"] == "SLOTS"
    assert conf["execution.checkpointing.dir"] == (tmp_path / "flink" / "checkpoints").as_uri()
    assert conf["execution.checkpointing.dir"].startswith("file:///")
    assert conf["metrics.reporter.prom.port"] == "9250-9259"
    # The wheel's JVM options (module opens Flink needs on Java 17) survive the overlay.
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in conf["env.java.opts.all"]
    # The job's SASL password is an ${env:...} reference: the env config provider is allowed, no other.
    assert conf["env.java.opts.all"].split()[-1] == scoring_job.ENV_PROVIDER_JVM_OPTION


def test_python_settings_let_the_taskmanagers_run_the_job() -> None:
    import find_libpython
    import pemja

    conf = flink_conf(ClusterConfig())
    assert conf["python.executable"] == conf["python.client.executable"] == sys.executable
    entries = conf["python.pythonpath"].split(os.pathsep)
    assert entries[0] == str(REPO_ROOT)
    for module in (pemja, find_libpython):
        assert str(Path(str(module.__file__)).resolve().parents[1]) in {
            str(Path(e).resolve()) for e in entries
        }
    assert conf["python.pythonpath"] == scoring_job.embedded_pythonpath()


def test_written_conf_and_lib(tmp_path: Path) -> None:
    config = ClusterConfig(state_dir=tmp_path / "flink", rest_port=18091, rpc_port=16123)
    Cluster(config).write_conf()
    written = yaml.safe_load((config.conf_dir / "config.yaml").read_text())
    assert written == flink_conf(config)
    jars = {p.name for p in (config.state_dir / "lib").iterdir()}
    assert any(j.startswith("flink-dist-") for j in jars)
    assert any(j.startswith("flink-python-") for j in jars)  # THREAD mode's driver, from opt/
    assert (config.conf_dir / "log4j-console.properties").exists()


def test_flink_run_command() -> None:
    config = ClusterConfig(rest_port=18091)
    detached = flink_run_command(config, ["--delivery", "exactly-once"], detached=True)
    assert detached[1:5] == ["run", "-m", "localhost:18091", "-d"]
    assert detached[-3:] == [str(JOB_FILE), "--delivery", "exactly-once"]
    assert detached[detached.index("-pyclientexec") + 1] == sys.executable
    assert "-d" not in flink_run_command(config, [], detached=False)
    env = flink_run_env(config, {"JOB_NAME": "x"})
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)
    assert env["FLINK_CONF_DIR"] == str(config.conf_dir.resolve())
    assert env["JOB_NAME"] == "x"


def test_cluster_flag_submits_the_same_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = ClusterConfig(state_dir=tmp_path / "flink", rest_port=18091)
    config.conf_dir.mkdir(parents=True)
    (config.conf_dir / "config.yaml").write_text("{}\n")
    monkeypatch.setenv("FLINK_CLUSTER_DIR", str(config.state_dir))
    monkeypatch.setenv("FLINK_REST_PORT", "18091")
    monkeypatch.delenv("JOB_PARALLELISM", raising=False)
    monkeypatch.delenv("CHECKPOINT_DIR", raising=False)
    calls: list[tuple[ClusterConfig, dict[str, str], list[str]]] = []

    def fake_run_attached(config: ClusterConfig, job_env: dict[str, str], job_args: list[str]) -> int:
        calls.append((config, job_env, job_args))
        return 0

    monkeypatch.setattr("fraud_core.flink_cluster.run_attached", fake_run_attached)
    assert scoring_job.main(["--cluster", "--delivery", "exactly-once"]) == 0
    ((used, job_env, job_args),) = calls
    assert used == config
    assert job_args == ["--delivery", "exactly-once"]
    assert job_env["JOB_PARALLELISM"] == "2"
    assert job_env["CHECKPOINT_DIR"] == str((config.checkpoint_dir / "fraud-scoring").resolve())
