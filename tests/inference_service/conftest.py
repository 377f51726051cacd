"""Fixtures of the scoring-service tests: a small trained model registry and the service as a real
process on a free port (session-scoped), plus a private instance for tests that move the pointers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraud_core.decision import scoring_request
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.model_folder import CARD_FILE, LIVE_POINTER, SHADOW_POINTER, write_pointer
from fraud_core.settings import DEV_API_KEY
from fraud_core.simulator import SimConfig, Simulator
from inference_service.training.train import TrainConfig, replay, train_and_register
from tests.tiers import process_fixture

TRAIN_EVENTS = 30_000
API_KEY = DEV_API_KEY
MAX_BATCH = 50
MAX_BODY = 200_000


@dataclass(frozen=True)
class Registry:
    path: Path
    live: str
    shadow: str
    bad: str


def train_small(model_dir: Path, seed: int, promote: bool) -> dict[str, Any]:
    """A quick model from the real simulator (same code path as ``make model``, fewer events)."""
    sim = Simulator(SimConfig(seed=seed, n_users=500))
    source = {"generator": "producers.simulator", "seed": seed, "n_users": 500, "events": TRAIN_EVENTS}
    return train_and_register(
        sim.events(count=TRAIN_EVENTS),
        sim.profiles(),
        TrainConfig(seed=seed),
        model_dir,
        source,
        promote=promote,
    ).to_json()


@process_fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """LIVE and SHADOW versions, plus a copy of LIVE whose card lists one feature too few."""
    path = tmp_path_factory.mktemp("models")
    live = train_small(path, seed=7, promote=True)["version"]
    shadow = train_small(path, seed=8, promote=False)["version"]
    write_pointer(path, SHADOW_POINTER, shadow)
    bad = "bad-feature-list"
    shutil.copytree(path / live, path / bad)
    card = json.loads((path / bad / CARD_FILE).read_text())
    card.update(version=bad, features=list(FEATURE_NAMES[:-1]))
    (path / bad / CARD_FILE).write_text(json.dumps(card))
    return Registry(path, live, shadow, bad)


@pytest.fixture(scope="session")
def sample_items() -> list[dict[str, Any]]:
    """Request items of an unseen simulator stream, features from the shared code."""
    sim = Simulator(SimConfig(seed=11, n_users=500))
    events = list(sim.events(count=3000))
    data = replay(events, sim.profiles())
    return [
        scoring_request(ev.txn, dict(zip(FEATURE_NAMES, row, strict=True)))
        for ev, row in zip(events, data.x.tolist(), strict=True)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    url: str
    model_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": API_KEY, **headers}, timeout=30)

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


def start_service(model_dir: Path, log: Path, **env: str) -> Service:
    port = _free_port()
    full_env = {
        **os.environ,
        "APP_ENV": "test",
        "MODEL_DIR": str(model_dir),
        "SCORING_PORT": str(port),
        "MAX_BATCH_SIZE": str(MAX_BATCH),
        "MAX_BODY_BYTES": str(MAX_BODY),
        "RELOAD_POLL_SECONDS": "0.2",
        **env,
    }
    for inherited in ("SCORING_API_KEY", "SHADOW_MODEL_VERSION"):
        if inherited not in env:
            full_env.pop(inherited, None)
    fh = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "inference_service"], env=full_env, stdout=fh, stderr=fh)
    service = Service(f"http://127.0.0.1:{port}", model_dir, proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"service exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(service.url + "/readyz", timeout=2).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise AssertionError(f"service not ready in 60 s: {log.read_text()[-2000:]}")


def stop_service(service: Service) -> None:
    service.proc.terminate()
    try:
        service.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        service.proc.kill()
        service.proc.wait()


@process_fixture(scope="session")
def service(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The shared instance: LIVE and SHADOW as trained; tests must not move its pointers."""
    svc = start_service(registry.path, tmp_path_factory.mktemp("logs") / "service.log")
    yield svc
    stop_service(svc)
    assert svc.proc.returncode == 0 or svc.proc.returncode == -15


@process_fixture()
def private_service(registry: Registry, tmp_path: Path) -> Iterator[Service]:
    """An instance over a private copy of the registry, for tests that switch LIVE."""
    model_dir = tmp_path / "models"
    shutil.copytree(registry.path, model_dir)
    (model_dir / SHADOW_POINTER).unlink()
    write_pointer(model_dir, LIVE_POINTER, registry.live)
    svc = start_service(model_dir, tmp_path / "service.log")
    yield svc
    stop_service(svc)
