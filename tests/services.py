"""The session's trained model registry and the scoring service as a real process: the types and
helpers behind the fixtures in tests/conftest.py, importable by tests that start an instance of
their own (key rotation, a private registry)."""

from __future__ import annotations

import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deploy.local.processes import ManagedProcess, start_scoring_service
from deploy.local.stack import free_port
from fraud_core.model_folder import LIVE_POINTER, write_pointer
from fraud_core.settings import DEV_API_KEY
from fraud_core.simulator import SimConfig, Simulator

API_KEY = DEV_API_KEY
MAX_BATCH = 50
MAX_BODY = 200_000
# The second (SHADOW) model: the real trainer on a smaller stream than `make model`'s.
SMALL_EVENTS = 30_000
SMALL_USERS = 500


@dataclass(frozen=True)
class Registry:
    """The session's model folder: ``live`` is what ``make model``'s trainer writes (seed 7),
    ``shadow`` a second version (seed 8, :func:`train_small`), ``bad`` a copy of ``live`` whose card
    lists one feature too few."""

    path: Path
    live: str
    shadow: str
    bad: str


def train_small(model_dir: Path, seed: int, promote: bool) -> str:
    """A quick model from the real simulator (same code path as ``make model``, fewer events); its
    version."""
    from inference_service.training.train import TrainConfig, train_and_register  # sklearn: 1 s to import

    sim = Simulator(SimConfig(seed=seed, n_users=SMALL_USERS))
    source = {
        "generator": "producers.simulator",
        "seed": seed,
        "n_users": SMALL_USERS,
        "events": SMALL_EVENTS,
    }
    return train_and_register(
        sim.events(count=SMALL_EVENTS),
        sim.profiles(),
        TrainConfig(seed=seed),
        model_dir,
        source,
        promote=promote,
    ).version


def registry_copy(registry: Registry, target: Path, versions: list[str]) -> Path:
    """``target`` holding ``versions`` of the registry with LIVE on the registry's live version and
    no SHADOW pointer: a folder a test may move pointers in, or serve without shadow scores, without
    training anything."""
    target.mkdir(parents=True, exist_ok=True)
    for version in versions:
        shutil.copytree(registry.path / version, target / version)
    write_pointer(target, LIVE_POINTER, registry.live)
    return target


@dataclass(frozen=True)
class Service:
    """A scoring service process on a free port, started by the product's own starter
    (``deploy.local.processes.start_scoring_service``, which waits for ``/readyz``)."""

    url: str
    api_key: str
    model_dir: Path
    process: ManagedProcess

    @property
    def log(self) -> Path:
        return self.process.log_path

    @property
    def proc(self) -> Any:
        return self.process.proc

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.api_key, **headers}, timeout=30)

    def wait_for_live(self, version: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = httpx.get(self.url + "/readyz", timeout=5)
            if r.status_code == 200 and r.json()["live_version"] == version:
                return
            time.sleep(0.1)
        raise AssertionError(
            f"service did not serve {version} within {timeout}s; log: {self.log.read_text()[-2000:]}"
        )


def start_service(model_dir: Path, log: Path, *, small_limits: bool = True, **env: str) -> Service:
    """Start the service over ``model_dir``; ``env`` overrides settings (``SCORING_API_KEY`` among
    them). With ``small_limits`` (the HTTP tests), batches of ``MAX_BATCH``, bodies of ``MAX_BODY``
    and a 0.2 s pointer poll; without (the job's service), the settings' defaults."""
    port = free_port()
    api_key = env.pop("SCORING_API_KEY", API_KEY)
    limits = {"MAX_BATCH_SIZE": str(MAX_BATCH), "MAX_BODY_BYTES": str(MAX_BODY), "RELOAD_POLL_SECONDS": "0.2"}
    settings = {"APP_ENV": "test", **(limits if small_limits else {}), **env}
    process = start_scoring_service(model_dir, port, log, api_key, settings)
    return Service(f"http://127.0.0.1:{port}", api_key, model_dir, process)


def stop_service(service: Service) -> int | None:
    """SIGTERM, as an orchestrator stops it; the exit code (0 or -15 after a clean stop)."""
    return service.process.stop(sig=signal.SIGTERM)
