"""The app factory: settings in, a ready-to-serve FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from inference_service.api.deps import ServiceState
from inference_service.api.middleware import RequestContextMiddleware
from inference_service.api.payloads import BatchRequest, ScoreItem
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
    app.add_exception_handler(RequestValidationError, _validation_error)
    _document_bodies(app, (ScoreItem, BatchRequest))
    return app


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 body, made safe for any input: the echoed ``input`` may hold NaN or infinity
    (accepted by the JSON parser, refused by the bounds; orjson writes them as null) or raw bytes
    that are not UTF-8 (an unparsable body; decoded with replacement characters).
    """
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
    content = orjson.dumps({"detail": errors})
    return Response(content, status_code=422, media_type="application/json")


def _document_bodies(app: FastAPI, models: tuple[type[BaseModel], ...]) -> None:
    """Add the request-body models the routes parse themselves to the OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
