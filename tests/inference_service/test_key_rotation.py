"""Rotating the scoring key under load (issue 24 §6): no request refused, no decision degraded.

Real processes: each stage of the rotation is a new scoring-service process with new settings,
swapped in behind a forwarding proxy the way a rolling update swaps replicas behind a Service, while a
client (the job's own :class:`BatchScorer`) sends 1,000 events/s without pause. The client changes its
key in the middle, as a job restarted with a new ``SCORING_API_KEY`` would. Progress is awaited by
counting answered batches, never by time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from faults.proxy import FaultProxy
from fraud_core.decision import scoring_request
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.scoring_client import BatchScorer
from fraud_core.settings import settings_errors
from fraud_core.simulator import SimConfig, Simulator
from fraud_core.transaction import Transaction
from inference_service.api.deps import matching_key
from inference_service.core.config import Settings
from inference_service.training.train import replay_with_transactions
from tests.inference_service.conftest import Registry, Service, start_service, stop_service

OLD_KEY = "old-scoring-key-" + "o" * 24
NEW_KEY = "new-scoring-key-" + "n" * 24
BATCH = 50
EVENTS_PER_S = 1000
# Batches the load must answer in each stage before the next step: enough for the step to be seen
# under load, in every stage.
BATCHES_PER_STAGE = 40


@dataclass
class Load:
    """A client sending ``BATCH`` events every ``BATCH / EVENTS_PER_S`` seconds through ``scorer``."""

    scorer: BatchScorer
    items: list[tuple[Transaction, dict[str, float]]]
    batches: int = 0
    events: int = 0
    degraded: int = 0
    stage_batches: dict[str, int] = field(default_factory=dict)
    stage: str = "old key only"
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        try:
            start = time.monotonic()
            i = 0
            while not self._stop.is_set():
                batch = [self.items[(i + j) % len(self.items)] for j in range(BATCH)]
                with self._lock:
                    results = self.scorer.score(batch)
                    self.batches += 1
                    self.events += len(results)
                    self.degraded += sum(r.degraded for r in results)
                    self.stage_batches[self.stage] = self.stage_batches.get(self.stage, 0) + 1
                i += BATCH
                pause = start + self.events / EVENTS_PER_S - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def switch(self, scorer: BatchScorer) -> None:
        """The client restarted with another key: between two batches, never during one."""
        with self._lock:
            self.scorer.close()
            self.scorer = scorer

    def enter(self, stage: str) -> None:
        with self._lock:
            self.stage = stage

    def wait_for(self, stage: str, thread: threading.Thread) -> None:
        while self.stage_batches.get(stage, 0) < BATCHES_PER_STAGE:
            assert thread.is_alive(), f"the load stopped: {self.error!r}"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def load_items() -> list[tuple[Transaction, dict[str, float]]]:
    sim = Simulator(SimConfig(seed=21, n_users=300))
    events = list(sim.events(count=1000))
    data, txns = replay_with_transactions(events, sim.profiles())
    return [
        (t, dict(zip(FEATURE_NAMES, row, strict=True))) for t, row in zip(txns, data.x.tolist(), strict=True)
    ]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Service]]:
    """Every service the test starts, stopped at the end whatever happened."""
    services: list[Service] = []
    yield services
    for svc in services:
        if svc.proc.poll() is None:
            stop_service(svc)


def _status(url: str, key: str, item: tuple[Transaction, dict[str, float]]) -> int:
    body = {"items": [scoring_request(*item)]}
    return httpx.post(url + "/v1/score/batch", headers={"X-API-Key": key}, json=body, timeout=10).status_code


def test_rotation_under_load_refuses_nothing_and_degrades_nothing(
    registry: Registry,
    tmp_path: Path,
    load_items: list[tuple[Transaction, dict[str, float]]],
    started: list[Service],
) -> None:
    def serve(name: str, **keys: str) -> Service:
        svc = start_service(registry.path, tmp_path / f"{name}.log", **keys)
        started.append(svc)
        return svc

    before = serve("before", SCORING_API_KEY=OLD_KEY)
    assert _status(before.url, NEW_KEY, load_items[0]) == 401  # the new key is not yet valid anywhere
    port = int(before.url.rsplit(":", 1)[1])
    proxy = FaultProxy("127.0.0.1", port).start()
    # A timeout far above any answer time on this shared machine: a slow answer is not what this test
    # is about, a refused key is.
    load = Load(BatchScorer(proxy.url, OLD_KEY, timeout_s=10.0), load_items)
    thread = threading.Thread(target=load.run, name="rotation-load", daemon=True)
    thread.start()
    try:
        load.wait_for("old key only", thread)

        # 1. The service accepts both keys: a new process replaces the old one behind the proxy.
        both = serve("both", SCORING_API_KEY=OLD_KEY, SCORING_API_KEY_NEXT=NEW_KEY)
        load.enter("service accepts both, client on old")
        proxy.upstream = ("127.0.0.1", int(both.url.rsplit(":", 1)[1]))
        stop_service(before)
        load.wait_for("service accepts both, client on old", thread)

        # 2. The client moves to the new key.
        load.switch(BatchScorer(proxy.url, NEW_KEY, timeout_s=10.0))
        load.enter("service accepts both, client on new")
        load.wait_for("service accepts both, client on new", thread)

        # 3. The old key is retired: the service keeps only the new one.
        after = serve("after", SCORING_API_KEY=NEW_KEY)
        load.enter("new key only")
        proxy.upstream = ("127.0.0.1", int(after.url.rsplit(":", 1)[1]))
        stop_service(both)
        load.wait_for("new key only", thread)
    finally:
        load.stop()
        thread.join(30)
        load.scorer.close()
        proxy.stop()

    assert load.error is None, repr(load.error)
    assert load.degraded == 0, f"{load.degraded} of {load.events} decisions degraded during the rotation"
    assert all(n >= BATCHES_PER_STAGE for n in load.stage_batches.values()), load.stage_batches
    assert len(load.stage_batches) == 4
    # The rotation really happened: the old key is refused at the end, the new one accepted.
    assert _status(after.url, OLD_KEY, load_items[0]) == 401
    assert _status(after.url, NEW_KEY, load_items[0]) == 200


ADMIN = "admin-key-" + "a" * 30


def test_the_next_key_is_accepted_alongside_the_current_one() -> None:
    settings = Settings(
        APP_ENV="production", SCORING_API_KEY=OLD_KEY, SCORING_API_KEY_NEXT=NEW_KEY, ADMIN_API_KEY=ADMIN
    )
    assert settings.scoring_keys == (OLD_KEY, NEW_KEY)
    assert settings.api_key == OLD_KEY  # what clients send is still SCORING_API_KEY
    keys = tuple(k.encode() for k in settings.scoring_keys)
    assert matching_key(OLD_KEY.encode(), keys) == OLD_KEY.encode()
    assert matching_key(NEW_KEY.encode(), keys) == NEW_KEY.encode()
    assert matching_key(b"old-scoring-key-" + b"o" * 23, keys) is None
    assert matching_key(ADMIN.encode(), keys) is None


def test_without_a_next_key_only_the_current_one_is_accepted() -> None:
    assert Settings(APP_ENV="test", SCORING_API_KEY=OLD_KEY).scoring_keys == (OLD_KEY,)
    assert Settings(APP_ENV="test", SCORING_API_KEY=OLD_KEY, SCORING_API_KEY_NEXT="").scoring_keys == (
        OLD_KEY,
    )


@pytest.mark.parametrize(
    ("next_key", "message"),
    [
        ("short", "SCORING_API_KEY_NEXT is 5 characters long"),
        ("dev-local-key-not-secret", "SCORING_API_KEY_NEXT must be set (and not the development key)"),
        (ADMIN, "SCORING_API_KEY_NEXT must differ from ADMIN_API_KEY"),
    ],
)
def test_a_bad_next_key_is_refused_at_start_without_echoing_it(next_key: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(
            APP_ENV="production", SCORING_API_KEY=OLD_KEY, SCORING_API_KEY_NEXT=next_key, ADMIN_API_KEY=ADMIN
        )
    logged = settings_errors(err.value)  # what the service logs when it refuses to start
    assert message in logged
    assert next_key not in logged.replace(message, "")
