"""The app factory: settings in, a ready-to-serve FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from inference_service.api.deps import ServiceState
from inference_service.api.limits import InFlightLimit
from inference_service.api.middleware import RequestContextMiddleware
from inference_service.api.routes import admin, health, model
from inference_service.api.routes.score import ScoringRoutes, openapi_paths, validation_error_body
from inference_service.core.config import Settings
from inference_service.metrics import Metrics
from inference_service.model_registry import ModelRegistry

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> ASGIApp:
    """Build the scoring app. The lifespan loads the models (off the event loop) and starts the
    pointer watcher; the service answers ``/healthz`` at once and ``/readyz`` once a model is in.

    The stack, outermost first: :class:`RequestContextMiddleware` (correlation id, metrics, logs),
    :class:`ScoringRoutes` (the two scoring routes, plain ASGI), then the FastAPI app.
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
        # Outside local mode the API is not advertised: no interactive docs, no OpenAPI document.
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    state = ServiceState(
        settings,
        metrics,
        registry,
        tuple(key.encode("utf-8") for key in settings.scoring_keys),
        settings.admin_key.encode("utf-8"),
        InFlightLimit(settings.MAX_IN_FLIGHT_PER_KEY, settings.RETRY_AFTER_S),
        InFlightLimit(settings.ADMIN_MAX_IN_FLIGHT, settings.RETRY_AFTER_S),
    )
    app.state.service = state
    for module in (model, health, admin):
        app.include_router(module.router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    _document_scoring_routes(app)
    return RequestContextMiddleware(ScoringRoutes(app, state), metrics)


async def _validation_error(request: Request, exc: Exception) -> Response:
    """The same 422 body as the scoring routes send (see :func:`validation_error_body`)."""
    assert isinstance(exc, RequestValidationError)
    return Response(validation_error_body(exc.errors()), status_code=422, media_type="application/json")


def _document_scoring_routes(app: FastAPI) -> None:
    """Add the two plain-ASGI scoring routes and their body models to the OpenAPI document."""
    generate = app.openapi
    paths, models = openapi_paths()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            spec["paths"] = {**paths, **spec.get("paths", {})}
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
