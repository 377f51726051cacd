"""The sweeper never dies silently (issue 24 §3): any exception is logged and counted and the loop
goes on, one broken case never stops the others, and /healthz fails when sweeps stop succeeding.

The first two tests are unit tests (fakes, no services); the rest run on the real stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

import console.app
from console.app import Sweeper
from console.metrics import ConsoleMetrics
from console.settings import ConsoleSettings
from console.verdicts import POLICY, Verdicts
from fraud_core.review_cases import OPENED, case_key
from tests.console.test_review_queue import console_settings, make_verdicts, open_case, review

__all__ = ["console_settings", "make_verdicts"]  # fixtures shared with the review-queue tests


class FakeVerdicts:
    """Sweeps that raise ``failures`` unexpected errors, then succeed; counts the calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def sweep(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"unexpected failure {self.calls}")
        return 0


class FakeCases:
    def counts(self) -> dict[str, int]:
        return {"open": 0}


def until(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_any_exception_is_counted_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ConsoleMetrics()
    fake_verdicts = FakeVerdicts(failures=3)
    sweeper = Sweeper(fake_verdicts, FakeCases(), metrics, interval_s=0.01)  # type: ignore[arg-type]
    sweeper.start()
    try:
        until(lambda: sweeper.last_good is not None, "the sweeper never swept well after the failures")
        assert sweeper.is_alive()
    finally:
        sweeper.stop.set()
        sweeper.join(5)
    assert metrics.registry.get_sample_value("fraud_console_sweep_errors_total") == 3
    assert sum("unexpected failure" in r.getMessage() for r in caplog.records) == 3
    assert (metrics.registry.get_sample_value("fraud_console_last_good_sweep_timestamp_seconds") or 0) > 0


def test_the_health_problem_names_a_dead_or_stalled_sweeper() -> None:
    stalled = Sweeper(FakeVerdicts(failures=10**9), FakeCases(), ConsoleMetrics(), 0.01)  # type: ignore[arg-type]
    stalled.start()
    try:
        assert stalled.problem(time.time(), stale_s=60) == ""  # young: not stale yet
        assert "no good sweep since start" in stalled.problem(time.time() + 61, stale_s=60)
    finally:
        stalled.stop.set()
        stalled.join(5)
    assert stalled.problem(time.time(), stale_s=60) == "the sweeper is not running"


@pytest.mark.integration
def test_one_broken_case_is_skipped_counted_and_the_others_resolved(
    stack: Any, make_verdicts: Callable[..., Verdicts]
) -> None:
    broken, good = review(amount_minor=1_000), review(amount_minor=1_000)
    for rec in (broken, good):
        open_case(stack, rec)
    store = redis.Redis.from_url(stack.redis_url)
    store.delete(case_key(broken["event_id"]))  # its record expired; the queue's index still has it
    verdicts = make_verdicts(REVIEW_TIMEOUT_S=0.2)
    mine = {broken["event_id"], good["event_id"]}
    until(
        lambda: mine <= set(verdicts.cases.overdue(time.time_ns() // 1_000_000, 0.2, limit=10_000)),
        "the cases never became overdue",
    )
    # The broken case was opened first, so it is met first: the good one is resolved all the same.
    assert verdicts.sweep() >= 1
    assert verdicts.cases.get(good["event_id"]).actor == POLICY
    failures = verdicts.metrics.registry.get_sample_value(
        "fraud_console_sweep_case_failures_total", {"error": "CaseNotFound"}
    )
    assert failures == 1
    assert store.zscore(OPENED, broken["event_id"]) is None  # dropped: no sweep could ever finish it
    verdicts.sweep()
    assert (
        verdicts.metrics.registry.get_sample_value(
            "fraud_console_sweep_case_failures_total", {"error": "CaseNotFound"}
        )
        == 1
    )
    store.close()


@pytest.mark.integration
def test_healthz_fails_when_sweeps_stop_succeeding(
    console_settings: ConsoleSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = console_settings.model_copy(update={"SWEEP_INTERVAL_S": 0.05, "SWEEP_STALE_S": 1.0})
    with TestClient(console.app.create_app(settings)) as http:
        until(lambda: http.get("/healthz").json()["last_good_sweep_at"] is not None, "no good sweep")
        assert http.get("/healthz").status_code == 200

        def broken_sweep(self: Verdicts, *args: Any, **kwargs: Any) -> int:
            raise RuntimeError("sweep broken (test)")

        monkeypatch.setattr(Verdicts, "sweep", broken_sweep)
        until(lambda: http.get("/healthz").status_code == 503, "/healthz never reported the stalled sweeper")
        body = http.get("/healthz").json()
        assert body["status"] == "failing" and "last good sweep" in body["problem"]
        services = http.app.state.services  # type: ignore[attr-defined]
        assert services.sweeper.is_alive()  # failing, counted, but still running
        assert (services.metrics.registry.get_sample_value("fraud_console_sweep_errors_total") or 0) >= 2

        monkeypatch.undo()
        until(lambda: http.get("/healthz").status_code == 200, "/healthz never recovered")
        services.sweeper.stop.set()
        services.sweeper.join(5)
        assert http.get("/healthz").json()["problem"] == "the sweeper is not running"
