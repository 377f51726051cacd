"""A standalone Flink session cluster on this machine, from the scripts the apache-flink wheel ships.

``python -m deploy.local.cluster up|down|status`` (``make cluster`` / ``make cluster-down``): one
JobManager and two TaskManagers, each started with ``bin/jobmanager.sh`` / ``bin/taskmanager.sh
start-foreground`` as a process of its own, with a PID file and a log under the state folder
(``.stack/state/flink-cluster``), like the local stack (:class:`deploy.local.stack.ServiceGroup`).
``make job ARGS="--cluster"`` submits the scoring job to it with ``bin/flink run -py``
(:mod:`fraud_core.flink_cluster`: the configuration and the submission, shared with the job).

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
import signal
import sys
import uuid
from collections.abc import Mapping
from typing import Any

import requests
import yaml

from deploy.local.stack import Service, ServiceGroup, group_main
from fraud_core.exceptions import StackError
from fraud_core.flink_cluster import ClusterConfig, flink_home

log = logging.getLogger("cluster")


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
