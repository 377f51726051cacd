"""Liveness, readiness and Prometheus metrics (unauthenticated, for probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from inference_service.api.deps import StateDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    live_version: str | None = None
    shadow_version: str | None = None


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up and its event loop answers."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health, "description": "no model loaded yet"}})
async def readyz(state: StateDep, response: Response) -> Health:
    """Ready once a live model is loaded, verified and warmed."""
    active = state.registry.active
    if active is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="not ready")
    return Health(
        status="ready",
        live_version=active.live.version,
        shadow_version=active.shadow.version if active.shadow else None,
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition of the service's metrics."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
