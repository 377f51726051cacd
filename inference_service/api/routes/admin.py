"""``POST /v1/admin/reload``: follow the registry pointers now instead of at the next poll."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from starlette.concurrency import run_in_threadpool

from fraud_core.model_folder import LIVE_POINTER, read_pointer
from inference_service.api.deps import AdminAuthorized, StateDep
from inference_service.api.payloads import ReloadResponse

# Its own key (X-Admin-Key): a leaked scoring key, held by every job and baseline, cannot swap models.
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminAuthorized])


@router.post(
    "/reload",
    responses={
        401: {"description": "missing or invalid X-Admin-Key"},
        409: {"description": "the version LIVE names was refused; old one serves"},
        429: {"description": "a reload is already running; see Retry-After"},
    },
)
async def reload(state: StateDep) -> ReloadResponse:
    """Load what LIVE/SHADOW name (on a worker thread: scoring goes on meanwhile) and swap it in.

    409 when LIVE names a version that was refused; the previous model keeps serving.
    """
    registry = state.registry
    changed = await run_in_threadpool(registry.reload, True)
    active = registry.active
    wanted = read_pointer(registry.model_dir, LIVE_POINTER)
    live = active.live.version if active else None
    if wanted is not None and wanted != live:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"LIVE names {wanted!r} but it was refused (see the service log); still serving {live!r}",
        )
    return ReloadResponse(
        live=live, shadow=active.shadow.version if active and active.shadow else None, changed=changed
    )
