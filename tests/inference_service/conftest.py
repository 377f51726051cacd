"""The scoring-service tests use the session fixtures of tests/conftest.py (``registry``, ``service``,
``private_service``, ``sample_items``); the helpers behind them live in tests/services.py. The names
below are kept for the test modules that import them from here."""

from __future__ import annotations

from tests.services import (
    API_KEY,
    MAX_BATCH,
    MAX_BODY,
    SMALL_EVENTS,
    Registry,
    Service,
    start_service,
    stop_service,
    train_small,
)

__all__ = [
    "API_KEY",
    "MAX_BATCH",
    "MAX_BODY",
    "SMALL_EVENTS",
    "Registry",
    "Service",
    "start_service",
    "stop_service",
    "train_small",
]
