"""The important fault scenarios, with the same oracle as ``make faults`` (faults/rig.py), on the
session's real stack: a registry outage while a new writer schema appears, a broker SIGKILL under
exactly-once, a lost checkpoint folder under exactly-once, scoring errors; each must show its fault
happened and events decided after the repair.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.stack import Stack
from faults.proxy import FaultProxy, Mode
from faults.rig import FaultNotObserved, Rig
from faults.scenarios import Load, broker_kill, checkpoints_lost, registry_down, scoring_500

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
    assert row.fault_observed.startswith("registry (pid "), row
    assert row.events_after_repair > 0, row
    assert row.holds


def test_a_broker_sigkill_under_exactly_once_loses_and_duplicates_nothing(rig: Rig) -> None:
    row = broker_kill(rig, "exactly-once", LOAD)
    assert (row.lost, row.duplicates) == (0, 0), row
    assert row.recovery_s is not None
    assert "closed" in row.fault_observed and row.fault_observed.startswith("kafka (pid "), row
    assert row.events_after_repair > 0, row
    assert row.holds


def test_a_lost_checkpoint_folder_under_exactly_once_loses_and_repeats_nothing_and_says_so(rig: Rig) -> None:
    row = checkpoints_lost(rig, "exactly-once", LOAD)
    assert (row.lost, row.duplicates) == (0, 0), row
    assert row.fault_observed and row.events_after_repair > 0, row
    assert row.holds, row  # includes: the restart's log says no checkpoint was found, and the rewind


def test_scoring_errors_are_seen_as_degraded_decisions_and_recovery_waits_for_the_model(rig: Rig) -> None:
    row = scoring_500(rig, "at-least-once", LOAD)
    assert row.lost == 0, row
    assert "proxy error for" in row.fault_observed and "degraded decisions" in row.fault_observed, row
    assert row.recovery_s is not None and row.events_after_repair > 0, row
    assert row.holds, row


def test_killing_a_service_that_is_not_running_fails_the_scenario(rig: Rig) -> None:
    redis = rig.svc("redis")
    rig.stack.stop(redis)
    try:
        with pytest.raises(FaultNotObserved, match="not running"):
            rig.take_down("redis")
    finally:
        rig.stack.start(redis)


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
