"""The lifecycle of a long-running consumer process (the action consumers, the drift monitor):
a ``/metrics`` endpoint, a poll loop until a stop event, signals that set that event, and a
``main`` that wires them to a settings-driven CLI.
"""

from __future__ import annotations

import abc
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server

from fraud_core.cli import fail
from fraud_core.exceptions import FraudPipelineError


class Service(Protocol):
    def run(self, stop: threading.Event | None = None) -> None: ...


def serve_metrics(port: int, registry: CollectorRegistry, log: logging.Logger) -> Any:
    """Serve ``registry`` on ``http://:port/metrics``; returns the server (``shutdown()`` it), or
    None when ``port`` is 0."""
    if not port:
        return None
    server, _thread = start_http_server(port, registry=registry)
    log.info("metrics on http://localhost:%d/metrics", port)
    return server


def poll_until(stop: threading.Event, poll_once: Callable[[], object], close: Callable[[], None]) -> None:
    """Call ``poll_once`` until ``stop`` is set, then ``close`` (also when a poll raises)."""
    try:
        while not stop.is_set():
            poll_once()
    finally:
        close()


class PollingService(abc.ABC):
    """A consumer process: serves its metrics, says what it consumes, polls until stopped, then
    closes once. Subclasses say what they are (``describe``), what one poll does and what they
    release."""

    def __init__(self, metrics_port: int, metrics_registry: CollectorRegistry, log: logging.Logger) -> None:
        self._metrics = (metrics_port, metrics_registry)
        self._log = log
        self._stop = threading.Event()
        self._server: Any = None

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll until ``stop`` is set, then close (also when a poll raises)."""
        if stop is not None:
            self._stop = stop
        self._server = serve_metrics(*self._metrics, self._log)
        self._log.info("%s", self.describe())
        poll_until(self._stop, self.poll_once, self.close)

    def close(self) -> None:
        """Stop serving metrics and release what the service holds. Safe to call twice."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.release()

    @abc.abstractmethod
    def describe(self) -> str:
        """The start-up line: what is consumed, as which group, and where results go."""

    @abc.abstractmethod
    def poll_once(self, timeout_s: float = 1.0) -> int:
        """One poll; returns how many records it handled."""

    @abc.abstractmethod
    def release(self) -> None:
        """Close the clients (flushing what is in flight). Called once per ``close``; must be safe
        to call again."""


def stop_on_signals(log: logging.Logger, then: str) -> threading.Event:
    """An event that SIGINT and SIGTERM set, logging ``<SIGNAL> received: <then>``."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: %s", signal.Signals(signum).name, then)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def run_service(service: Callable[[], Service], log_level: str, log: logging.Logger, then: str) -> int:
    """Configure logging, build the service and run it until a signal; exit 1 on a pipeline failure."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = stop_on_signals(log, then)
    try:
        service().run(stop)
    except FraudPipelineError as exc:
        fail(str(exc), 1)
    return 0
