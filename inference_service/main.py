"""The app factory: settings in, a ready-to-serve FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from inference_service.api.deps import ServiceState
from inference_service.api.middleware import RequestContextMiddleware
from inference_service.api.routes import admin, health, model, score
from inference_service.core.config import Settings
from inference_service.metrics import Metrics
from inference_service.model_registry import ModelRegistry

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the scoring app. The lifespan loads the models (off the event loop) and starts the
    pointer watcher; the service answers ``/healthz`` at once and ``/readyz`` once a model is in.
    """
    metrics = Metrics()
    registry = ModelRegistry(settings.MODEL_DIR, settings.SHADOW_MODEL_VERSION, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(registry.reload)
        if registry.active is None:
            log.warning("no live model yet; waiting for %s/LIVE", settings.MODEL_DIR)
        registry.start(settings.RELOAD_POLL_SECONDS)
        try:
            yield
        finally:
            registry.stop()

    app = FastAPI(
        title="Fraud scoring service",
        version="1.0.0",
        summary="Scores payments with the live fraud model; shadow model, hot reload, Prometheus metrics.",
        lifespan=lifespan,
        max_body_size=settings.MAX_BODY_BYTES,
    )
    app.state.service = ServiceState(settings, metrics, registry, settings.api_key.encode("utf-8"))
    for module in (score, model, health, admin):
        app.include_router(module.router)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
