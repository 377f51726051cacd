"""``GET /v1/model``: the live model's card (and the shadow's version, if any). Its scoring key is
checked in front of FastAPI, with the scoring routes' (:mod:`inference_service.api.routes.score`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from inference_service.api.deps import ModelsDep, ScoringKeyDocumented

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[ScoringKeyDocumented])


@router.get("/model")
async def model_card(models: ModelsDep) -> dict[str, Any]:
    """The model card of the live version, plus ``shadow_version``."""
    return {**models.live.card, "shadow_version": models.shadow.version if models.shadow else None}
