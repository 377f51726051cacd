"""The local standalone Flink cluster as a job sees it: where it lives, and how the scoring job is
submitted to it (``flink run -py``).

Both sides of ``make cluster`` use this: ``deploy/local/cluster.py`` starts and stops the cluster's
processes from :class:`ClusterConfig`, and ``make job ARGS="--cluster"``
(``flink_jobs/scoring_job.py``) submits itself with :func:`run_attached`. It lives in fraud_core so
the job, a deployable, does not import the local tooling.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from fraud_core.exceptions import StackError

log = logging.getLogger("cluster")

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_FILE = REPO_ROOT / "flink_jobs" / "scoring_job.py"
CONNECTOR_DIR = REPO_ROOT / ".stack" / "lib" / "flink"
SUBMIT_TIMEOUT_S = 300.0


def flink_home() -> Path:
    """The Flink distribution inside the apache-flink wheel (``bin/``, ``lib/``, ``opt/``, ``conf/``)."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster lives, its ports and its size.

    The REST port (web UI and job submission) defaults to 8091: 8081 is the schema registry's.
    Two TaskManagers with two slots each: a job of parallelism 2 gets one slot on each
    (``taskmanager.load-balance.mode: SLOTS``), and after one TaskManager is lost it can restart
    on the other's two slots. Memory suits a 2-core, 24 GB machine shared with Kafka and the rest.
    """

    state_dir: Path = REPO_ROOT / ".stack" / "state" / "flink-cluster"
    rest_port: int = 8091
    rpc_port: int = 6123
    taskmanagers: int = 2
    slots_per_taskmanager: int = 2
    jobmanager_memory: str = "1024m"
    taskmanager_memory: str = "1024m"
    # Prometheus reporter ports, one per process from this range; "" turns the reporter off.
    metrics_ports: str = "9250-9259"
    python: str = sys.executable
    connector_dir: Path = CONNECTOR_DIR

    @classmethod
    def from_env(cls) -> ClusterConfig:
        env = os.environ
        return cls(
            state_dir=Path(env.get("FLINK_CLUSTER_DIR", str(cls.state_dir))),
            rest_port=int(env.get("FLINK_REST_PORT", str(cls.rest_port))),
            rpc_port=int(env.get("FLINK_RPC_PORT", str(cls.rpc_port))),
            metrics_ports=env.get("FLINK_METRICS_PORTS", cls.metrics_ports),
        )

    @property
    def rest_url(self) -> str:
        return f"http://localhost:{self.rest_port}"

    @property
    def conf_dir(self) -> Path:
        return self.state_dir / "conf"

    @property
    def checkpoint_dir(self) -> Path:
        return self.state_dir / "checkpoints"

    def job_checkpoint_dir(self, job_name: str) -> Path:
        """Where a job submitted to this cluster keeps its checkpoints (one folder per job name)."""
        return self.checkpoint_dir / job_name


# ---- job submission ---------------------------------------------------------------------------
@dataclass
class SubmittedJob:
    """A job running on the cluster, addressed by its Flink job id through the REST API."""

    job_id: str
    rest_url: str
    output: str = field(repr=False, default="")

    @property
    def web_url(self) -> str:
        return f"{self.rest_url}/#/job/running/{self.job_id}/overview"

    def details(self) -> dict[str, Any]:
        resp = requests.get(f"{self.rest_url}/jobs/{self.job_id}", timeout=5)
        resp.raise_for_status()
        return dict(resp.json())

    def state(self) -> str:
        """RUNNING, RESTARTING, FAILED, CANCELED, ..."""
        return str(self.details()["state"])

    def failures(self) -> list[dict[str, Any]]:
        """The job's failures since submission, newest first, from its exception history (each
        restart follows one); ``exceptionName``, ``taskName``, ``taskManagerId``, ``timestamp``."""
        resp = requests.get(f"{self.rest_url}/jobs/{self.job_id}/exceptions", timeout=5)
        resp.raise_for_status()
        return list(resp.json()["exceptionHistory"]["entries"])

    def wait_running(self, timeout_s: float = 120.0) -> None:
        """Wait until every task of the job is running (not merely the job scheduled)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            details = self.details()
            if details["state"] in ("FAILED", "CANCELED", "FINISHED"):
                raise StackError(f"job {self.job_id} is {details['state']}; see {self.web_url}")
            vertices = details.get("vertices", [])
            if details["state"] == "RUNNING" and vertices and all(v["status"] == "RUNNING" for v in vertices):
                return
            time.sleep(0.5)
        raise StackError(f"job {self.job_id} not running after {timeout_s:.0f}s; see {self.web_url}")

    def cancel(self, timeout_s: float = 60.0) -> None:
        """Cancel the job (its last checkpoint is retained) and wait until it is cancelled."""
        requests.patch(f"{self.rest_url}/jobs/{self.job_id}?mode=cancel", timeout=5).raise_for_status()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.state() not in ("CANCELED", "FAILED", "FINISHED"):
            time.sleep(0.5)


def require_conf(config: ClusterConfig) -> None:
    """Fail with what to do when the cluster was never started (``flink run`` needs its conf)."""
    if not (config.conf_dir / "config.yaml").exists():
        raise StackError(f"no cluster configuration in {config.conf_dir}: run `make cluster` first")


def flink_run_command(config: ClusterConfig, job_args: Sequence[str], detached: bool) -> list[str]:
    """``bin/flink run`` for the scoring job file on this cluster, with ``job_args`` for the job."""
    cmd = [str(flink_home() / "bin" / "flink"), "run", "-m", f"localhost:{config.rest_port}"]
    if detached:
        cmd.append("-d")
    cmd += ["-pyclientexec", config.python, "-pyexec", config.python, "-py", str(JOB_FILE)]
    return [*cmd, *job_args]


def flink_run_env(config: ClusterConfig, job_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of ``bin/flink run``: the cluster's conf, and the repository on the Python
    client's path (the job file imports ``flink_jobs`` and ``fraud_core``)."""
    env = {**os.environ, **job_env}
    env["FLINK_CONF_DIR"] = str(config.conf_dir.resolve())
    # The client's own log, which would otherwise go into the wheel's folder inside the venv.
    env["FLINK_LOG_DIR"] = str((config.state_dir / "log").resolve())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


JOB_ID = re.compile(r"JobID ([0-9a-f]{32})|job id ([0-9a-f]{32})")


def submit_job(
    config: ClusterConfig,
    job_env: Mapping[str, str],
    job_args: Sequence[str],
    log_path: Path,
    timeout_s: float = SUBMIT_TIMEOUT_S,
) -> SubmittedJob:
    """Submit the scoring job detached (``flink run -d -py``) and return it once Flink has
    accepted it; the client's output goes to ``log_path``."""
    require_conf(config)
    cmd = flink_run_command(config, job_args, detached=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(
            cmd,
            env=flink_run_env(config, job_env),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"`flink run` did not return within {timeout_s:.0f}s: {' '.join(cmd)}") from exc
    output = res.stdout + res.stderr
    log_path.write_text(output)
    found = JOB_ID.search(output)
    if res.returncode != 0 or found is None:
        tail = "\n".join(output.splitlines()[-30:])
        raise StackError(f"`flink run` failed (exit {res.returncode}); log {log_path}:\n{tail}")
    return SubmittedJob(found.group(1) or found.group(2), config.rest_url, output)


def run_attached(config: ClusterConfig, job_env: Mapping[str, str], job_args: Sequence[str]) -> int:
    """Submit the scoring job attached, in the foreground: its output streams to this process's,
    and Ctrl-C (or SIGTERM) cancels the job, as it stops the mini-cluster job; the job's last
    checkpoint is retained for the next start. Returns the client's exit code."""
    require_conf(config)
    cmd = flink_run_command(config, job_args, detached=False)
    log.info("submitting to the cluster at %s: %s", config.rest_url, " ".join(cmd))

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    job_id: str | None = None
    proc = subprocess.Popen(
        cmd,
        env=flink_run_env(config, job_env),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            found = JOB_ID.search(line)
            if found and job_id is None:
                job_id = found.group(1) or found.group(2)
        return proc.wait()
    except KeyboardInterrupt:
        # The `flink` client does not cancel a job submitted asynchronously when it is interrupted.
        if job_id is not None:
            log.info("interrupted: cancelling job %s (its last checkpoint is retained)", job_id)
            SubmittedJob(job_id, config.rest_url).cancel()
        proc.terminate()
        proc.wait(timeout=30)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
