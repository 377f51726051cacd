"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from inference_service.api.limits import InFlightLimit
from inference_service.core.config import Settings
from inference_service.metrics import Metrics
from inference_service.model_registry import ActiveModels, ModelRegistry


@dataclass(frozen=True)
class ServiceState:
    """Everything a route may need; built once by the app factory."""

    settings: Settings
    metrics: Metrics
    registry: ModelRegistry
    api_keys: tuple[bytes, ...]
    admin_key: bytes
    scoring_limit: InFlightLimit
    admin_limit: InFlightLimit


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the scoring API key")


def matching_key(value: bytes, keys: tuple[bytes, ...]) -> bytes | None:
    """The accepted key equal to ``value``, or None. Every key is compared, each in constant time, so
    the time taken says neither whether nor which key matched."""
    found = None
    for key in keys:
        if hmac.compare_digest(value, key):
            found = key
    return found


_admin_key_header = APIKeyHeader(
    name="X-Admin-Key", scheme_name="AdminKeyHeader", auto_error=False, description="the admin API key"
)


async def require_admin_key(
    state: StateDep, key: Annotated[str | None, Security(_admin_key_header)]
) -> AsyncIterator[None]:
    """401 unless ``X-Admin-Key`` equals ``ADMIN_API_KEY`` (the scoring key does not open the admin
    routes); 429 with ``Retry-After`` while ``ADMIN_MAX_IN_FLIGHT`` admin requests are running."""
    if key is None or not hmac.compare_digest(key.encode("utf-8", "surrogateescape"), state.admin_key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid X-Admin-Key",
            headers={"WWW-Authenticate": "X-Admin-Key"},
        )
    limit = state.admin_limit
    ident = limit.key_id(state.admin_key)
    if not limit.acquire(ident):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"an admin request is already running (limit {limit.limit}); retry later",
            headers={"Retry-After": limit.retry_after.decode()},
        )
    try:
        yield
    finally:
        limit.release(ident)


async def get_models(state: StateDep) -> ActiveModels:
    """The models serving right now, read once per request; 503 until a live model is loaded."""
    active = state.registry.active
    if active is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet; train one (make model)"
        )
    return active


ModelsDep = Annotated[ActiveModels, Depends(get_models)]
# Documents the scoring key in the OpenAPI document; it checks nothing: the key of every ``/v1/``
# path outside ``/v1/admin/`` is checked once, in front of FastAPI (api/routes/score.py).
ScoringKeyDocumented = Security(_api_key_header)
AdminAuthorized = Depends(require_admin_key)
