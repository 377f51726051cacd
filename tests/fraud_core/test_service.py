"""The consumer-process lifecycle helpers, in process (no services)."""

from __future__ import annotations

import logging
import os
import signal
import threading

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from deploy.local.stack import free_port
from fraud_core.exceptions import FraudPipelineError
from fraud_core.service import PollingService, poll_until, run_service, stop_on_signals

log = logging.getLogger("test_service")


def test_poll_until_stops_on_the_event_and_closes_even_when_a_poll_raises() -> None:
    stop, polls, closed = threading.Event(), [], []

    def poll() -> None:
        polls.append(1)
        if len(polls) == 3:
            stop.set()

    poll_until(stop, poll, lambda: closed.append(1))
    assert (len(polls), closed) == (3, [1])

    def broken() -> None:
        raise RuntimeError("poll failed")

    with pytest.raises(RuntimeError):
        poll_until(threading.Event(), broken, lambda: closed.append(2))
    assert closed == [1, 2]


class FakeCountingService(PollingService):
    """Counts its polls; stops itself after the third."""

    def __init__(self, port: int) -> None:
        self.registry = CollectorRegistry()
        self.polls = Counter("fake_polls", "polls", registry=self.registry)
        super().__init__(port, self.registry, log)
        self.port, self.scraped, self.released = port, [], 0

    def describe(self) -> str:
        return "counting polls"

    def poll_once(self, timeout_s: float = 1.0) -> int:
        self.polls.inc()
        self.scraped.append(requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text)
        if len(self.scraped) == 3:
            self._stop.set()
        return 1

    def release(self) -> None:
        self.released += 1


def test_a_polling_service_serves_metrics_while_it_polls_and_closes_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = FakeCountingService(free_port())
    with caplog.at_level(logging.INFO, logger=log.name):
        service.run()
    assert "counting polls" in caplog.messages
    assert "fake_polls_total 3.0" in service.scraped[2]  # served live: each scrape follows a poll
    assert service.released == 1
    with pytest.raises(requests.ConnectionError):  # the metrics endpoint is shut down
        requests.get(f"http://127.0.0.1:{service.port}/metrics", timeout=2)


def test_sigterm_and_sigint_set_the_stop_event(caplog: pytest.LogCaptureFixture) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            stop = stop_on_signals(log, "closing")
            with caplog.at_level(logging.INFO, logger="test_service"):
                os.kill(os.getpid(), sig)
            assert stop.wait(5)
            assert f"{sig.name} received: closing" in caplog.text
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _FakeService:
    def __init__(self, fail_with: Exception | None) -> None:
        self.fail_with = fail_with

    def run(self, stop: threading.Event | None = None) -> None:
        if self.fail_with is not None:
            raise self.fail_with


def test_a_pipeline_failure_exits_1_with_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert run_service(lambda: _FakeService(None), "INFO", log, "stopping") == 0
        with pytest.raises(SystemExit) as exit_info:
            run_service(lambda: _FakeService(FraudPipelineError("redis is gone")), "INFO", log, "stopping")
        assert exit_info.value.code == 1
        assert "error: redis is gone" in capsys.readouterr().err
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
