"""The important fault scenarios, with the same oracle as ``make faults`` (faults/rig.py), on the
session's real stack: a registry outage while a new writer schema appears, a broker SIGKILL under
exactly-once, and a lost checkpoint folder under exactly-once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.stack import Stack
from faults.proxy import FaultProxy, Mode
from faults.rig import Rig
from faults.scenarios import Load, broker_kill, checkpoints_lost, registry_down

pytestmark = [pytest.mark.integration, pytest.mark.flink]

LOAD = Load(rate_eps=100.0, warmup_s=3.0, outage_s=5.0, after_s=4.0)


@pytest.fixture(scope="module")
def rig(stack, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    """One rig and scoring service for the module, as ``make faults`` runs every scenario on one."""
    rig = Rig(Stack(stack.config), model_dir, tmp_path_factory.mktemp("faults"), "faults-test-key")
    rig.start_service()
    try:
        yield rig
    finally:
        rig.close()


@pytest.fixture(autouse=True)
def stack_restored(rig: Rig) -> Iterator[None]:
    """A failed scenario must not leave the session's stack down for the tests after it."""
    yield
    for svc in rig.stack.services:
        rig.stack.start(svc)


def test_a_registry_outage_with_a_new_writer_schema_loses_nothing_and_dead_letters_nothing(rig: Rig) -> None:
    row = registry_down(rig, "exactly-once", LOAD)
    assert (row.lost, row.duplicates, row.dead_letters) == (0, 0, 0), row
    assert row.decisions_out == row.events_in > 1000
    assert row.holds


def test_a_broker_sigkill_under_exactly_once_loses_and_duplicates_nothing(rig: Rig) -> None:
    row = broker_kill(rig, "exactly-once", LOAD)
    assert (row.lost, row.duplicates) == (0, 0), row
    assert row.recovery_s is not None
    assert row.holds


def test_a_lost_checkpoint_folder_under_exactly_once_loses_and_repeats_nothing_and_says_so(rig: Rig) -> None:
    row = checkpoints_lost(rig, "exactly-once", LOAD)
    assert (row.lost, row.duplicates) == (0, 0), row
    assert row.holds, row  # includes: the restart's log says no checkpoint was found, and the rewind


def test_the_fault_proxy_injects_errors_and_passes_through(rig: Rig) -> None:
    import requests

    proxy = FaultProxy("127.0.0.1", rig.service_port).start()
    try:
        assert requests.get(f"{proxy.url}/healthz", timeout=5).status_code == 200
        proxy.mode = Mode.ERROR
        assert requests.get(f"{proxy.url}/healthz", timeout=5).status_code == 500
        proxy.mode = Mode.DROP
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{proxy.url}/healthz", timeout=5)
    finally:
        proxy.stop()
