"""A standalone Flink session cluster on this machine, from the scripts the apache-flink wheel ships.

``python -m deploy.local.cluster up|down|status`` (``make cluster`` / ``make cluster-down``): one
JobManager and two TaskManagers, each started with ``bin/jobmanager.sh`` / ``bin/taskmanager.sh
start-foreground`` as a process of its own, with a PID file and a log under the state folder
(``.stack/state/flink-cluster``), like the local stack (:class:`deploy.local.stack.ServiceGroup`).
``make job ARGS="--cluster"`` submits the scoring job to it with ``bin/flink run -py``.

Session mode, not application mode: one long-lived cluster to which ``flink run`` submits the same
job file that ``make job`` runs in the mini-cluster, as the Kubernetes session deployment does;
the cluster outlives a job, so a job can be cancelled, changed and resubmitted (restoring its
retained checkpoint) without restarting the cluster, and a TaskManager can be killed and
restarted under a running job.

For fault scripts::

    cluster = Cluster(ClusterConfig.from_env())
    cluster.up()
    job = submit_job(cluster.config, env, ["--delivery", "exactly-once"], log_path)
    cluster.kill_taskmanager(1)      # SIGKILL, by PID
    cluster.start_taskmanager(1)
    job.cancel()
    cluster.down()
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from deploy.local.stack import REPO_ROOT, Service, ServiceGroup, group_main
from fraud_core.exceptions import StackError

log = logging.getLogger("cluster")

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


def flink_conf(config: ClusterConfig) -> dict[str, str]:
    """The cluster's ``config.yaml`` as flat keys: the wheel's defaults (JVM options for Java 17)
    overlaid with ours."""
    # The job sets the same python.pythonpath itself; here it is the default for any PyFlink job.
    from flink_jobs.scoring_job import ENV_PROVIDER_JVM_OPTION, embedded_pythonpath

    with (flink_home() / "conf" / "config.yaml").open() as f:
        conf = _flatten(yaml.safe_load(f) or {})
    state = config.state_dir.resolve()
    conf.update(
        {
            "jobmanager.rpc.address": "localhost",
            "jobmanager.rpc.port": str(config.rpc_port),
            "jobmanager.bind-host": "localhost",
            "jobmanager.memory.process.size": config.jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.host": "localhost",
            "taskmanager.bind-host": "localhost",
            "taskmanager.numberOfTaskSlots": str(config.slots_per_taskmanager),
            "taskmanager.memory.process.size": config.taskmanager_memory,
            # Keyed state is on the heap (hashmap backend) and THREAD-mode Python needs no
            # managed memory, so most of Flink's default 40% managed share would sit unused.
            "taskmanager.memory.managed.fraction": "0.05",
            # Spread a job's slots over the TaskManagers, so that losing one is a real failure.
            "taskmanager.load-balance.mode": "SLOTS",
            "parallelism.default": "2",
            "rest.address": "localhost",
            "rest.bind-address": "localhost",
            "rest.port": str(config.rest_port),
            # A killed TaskManager is noticed in seconds (the defaults wait up to 50 s).
            "heartbeat.interval": "2000",
            "heartbeat.timeout": "10000",
            "execution.checkpointing.dir": config.checkpoint_dir.resolve().as_uri(),
            "execution.checkpointing.savepoint-dir": (state / "savepoints").as_uri(),
            "io.tmp.dirs": str(state / "tmp"),
            "python.executable": config.python,
            "python.client.executable": config.python,
            "python.pythonpath": embedded_pythonpath(),
        }
    )
    # The job's SASL password is an ${env:...} reference (fraud_core/connections.py): the Kafka
    # clients may load the environment config provider and no other, as in compose and Kubernetes.
    conf["env.java.opts.all"] = f"{conf.get('env.java.opts.all', '')} {ENV_PROVIDER_JVM_OPTION}".strip()
    if config.metrics_ports:
        conf["metrics.reporter.prom.factory.class"] = (
            "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
        )
        conf["metrics.reporter.prom.port"] = config.metrics_ports
    return conf


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


class Cluster(ServiceGroup):
    """The JobManager and the TaskManagers of one :class:`ClusterConfig`, each stopped by PID."""

    port_hint = "FLINK_REST_PORT, FLINK_RPC_PORT"
    label = "cluster"

    def __init__(self, config: ClusterConfig, env: Mapping[str, str] | None = None) -> None:
        """``env`` is added to every process's environment: the job's operators read their secrets
        (``SCORING_API_KEY``, Redis and Kafka passwords) from the TaskManager's environment at
        ``open()``, never from the job graph, so a cluster must be started with them. ``make cluster``
        passes its own environment on."""
        self.config = config
        self.env = dict(env or {})
        services = [self._jobmanager()]
        services += [self._taskmanager(i) for i in range(1, config.taskmanagers + 1)]
        super().__init__(config.state_dir, services)

    # ---- configuration on disk ----------------------------------------------------------
    def write_conf(self) -> None:
        """Write ``conf/`` and ``lib/`` under the state folder (on every ``up``, so a changed
        setting takes effect at the next start)."""
        cfg = self.config
        home = flink_home()
        cfg.conf_dir.mkdir(parents=True, exist_ok=True)
        for name in ("log4j-console.properties", "log4j-cli.properties", "logback-console.xml"):
            (cfg.conf_dir / name).write_bytes((home / "conf" / name).read_bytes())
        conf = flink_conf(cfg)
        (cfg.conf_dir / "config.yaml").write_text(
            "# Written by deploy/local/cluster.py at each `make cluster`; edit ClusterConfig instead.\n"
            + yaml.safe_dump(conf, sort_keys=True, width=1 << 16)
        )
        # lib/ = the wheel's lib/ plus the Python driver from opt/, as our Flink image does
        # (deploy/docker/flink.Dockerfile): the driver and PEMJA's JNI bridge then live in the
        # parent class loader, loaded once per TaskManager rather than with each job's classes.
        lib = cfg.state_dir / "lib"
        lib.mkdir(parents=True, exist_ok=True)
        for old in lib.iterdir():
            old.unlink()
        for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python-*.jar")]:
            (lib / jar.name).symlink_to(jar)
        for folder in ("log", "tmp", "checkpoints", "savepoints", "script-pids"):
            (cfg.state_dir / folder).mkdir(exist_ok=True)

    def _script_env(self) -> dict[str, str]:
        state = self.config.state_dir.resolve()
        return {
            "FLINK_CONF_DIR": str(self.config.conf_dir.resolve()),
            "FLINK_LIB_DIR": str(state / "lib"),
            "FLINK_LOG_DIR": str(state / "log"),
            # The scripts record PIDs of their own there; ours are the `<name>.pid` files.
            "FLINK_PID_DIR": str(state / "script-pids"),
            **self.env,
        }

    # ---- services -------------------------------------------------------------------------
    def _jobmanager(self) -> Service:
        return Service(
            "jobmanager",
            self.config.rest_port,
            lambda: [str(flink_home() / "bin" / "jobmanager.sh"), "start-foreground"],
            lambda: self._rest("/overview") is not None,
            prepare=self.write_conf,
            env=self._script_env(),
        )

    def _taskmanager(self, index: int) -> Service:
        name = f"taskmanager-{index}"
        id_file = self.config.state_dir / f"{name}.resource-id"

        def command() -> list[str]:
            # A fresh resource id per start: a restarted TaskManager is told apart from the one
            # the JobManager may still list until its heartbeat times out.
            resource_id = f"tm-{index}-{uuid.uuid4().hex[:6]}"
            id_file.write_text(resource_id)
            script = str(flink_home() / "bin" / "taskmanager.sh")
            return [script, "start-foreground", "-D", f"taskmanager.resource-id={resource_id}"]

        def healthy() -> bool:
            return self.taskmanager_resource_id(index) in {tm["id"] for tm in self.taskmanagers()}

        return Service(name, 0, command, healthy, env=self._script_env())

    def _rest(self, path: str) -> Any:
        try:
            resp = requests.get(f"{self.config.rest_url}{path}", timeout=2)
        except requests.RequestException:
            return None
        return resp.json() if resp.status_code == 200 else None

    # ---- API --------------------------------------------------------------------------------
    def up(self) -> None:
        """Start the JobManager, then the TaskManagers side by side (idempotent)."""
        jobmanager, *taskmanagers = self.services
        log.info("%-14s %s", jobmanager.name, self.start(jobmanager))
        launched = {svc.name: self.launch(svc) for svc in taskmanagers if self.pid(svc) is None}
        for svc in taskmanagers:
            pid = launched.get(svc.name)
            log.info(
                "%-14s %s", svc.name, self.start(svc) if pid is None else self._wait(svc, pid, "started")
            )

    def summary(self) -> str:
        cfg = self.config
        return (
            f"  web UI      {cfg.rest_url}\n  checkpoints {cfg.checkpoint_dir.resolve().as_uri()}\n"
            f"  logs        {cfg.state_dir / 'log'}"
        )

    def down(self) -> None:
        """Stop every process ``up`` started, by PID (TaskManagers first)."""
        for svc in reversed(self.services):
            log.info("%-14s %s", svc.name, self.stop(svc))

    def taskmanagers(self) -> list[dict[str, Any]]:
        """The TaskManagers registered at the JobManager, as its REST API lists them."""
        answer = self._rest("/taskmanagers")
        return list(answer["taskmanagers"]) if answer else []

    def _tm(self, index: int) -> Service:
        name = f"taskmanager-{index}"
        for svc in self.services:
            if svc.name == name:
                return svc
        raise StackError(f"no {name}: the cluster has {self.config.taskmanagers} TaskManagers (1-based)")

    def taskmanager_pids(self) -> dict[int, int | None]:
        """TaskManager number (1-based) -> PID, or None when it is not running."""
        return {i: self.pid(self._tm(i)) for i in range(1, self.config.taskmanagers + 1)}

    def taskmanager_resource_id(self, index: int) -> str | None:
        """The resource id TaskManager ``index`` was last started with (None if never)."""
        try:
            return (self.config.state_dir / f"taskmanager-{index}.resource-id").read_text().strip()
        except OSError:
            return None

    def kill_taskmanager(self, index: int) -> int:
        """SIGKILL TaskManager ``index`` by its PID, as a lost machine would; returns the PID."""
        svc = self._tm(index)
        pid = self.pid(svc)
        if pid is None:
            raise StackError(f"{svc.name} is not running")
        self.stop(svc, sig=signal.SIGKILL)
        return pid

    def start_taskmanager(self, index: int) -> str:
        """Start TaskManager ``index`` again (after a kill) and wait until it has registered."""
        return self.start(self._tm(index))


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


def main(argv: list[str] | None = None) -> int:
    return group_main(
        argv,
        "python -m deploy.local.cluster",
        "Run a standalone Flink session cluster (one JobManager, two TaskManagers) from the "
        "apache-flink wheel's scripts. Environment: FLINK_REST_PORT (8091: web UI and submission), "
        "FLINK_RPC_PORT (6123), FLINK_METRICS_PORTS (9250-9259, empty = off), FLINK_CLUSTER_DIR "
        "(.stack/state/flink-cluster: conf, logs, PID files, checkpoints). Submit the job with "
        '`make job ARGS="--cluster"`.',
        lambda: Cluster(ClusterConfig.from_env()),
    )


if __name__ == "__main__":
    sys.exit(main())
