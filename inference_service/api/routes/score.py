"""``POST /v1/score`` and ``POST /v1/score/batch``."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Response
from fastapi.exceptions import RequestValidationError

from inference_service.api.deps import Authorized, ModelsDep, StateDep, body_openapi, json_body
from inference_service.api.payloads import BatchRequest, BatchResponse, ScoreItem, ScoreResponse
from inference_service.scoring import score_items

router = APIRouter(prefix="/v1/score", tags=["score"], dependencies=[Authorized])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "missing or invalid X-API-Key"},
    413: {"description": "request body larger than MAX_BODY_BYTES"},
    503: {"description": "no model loaded yet"},
}


def _json(content: object) -> Response:
    # The handlers build plain dicts and serialise them once with orjson: re-validating a
    # 512-row response through its pydantic model would cost more than scoring it.
    return Response(orjson.dumps(content), media_type="application/json")


ItemBody = Annotated[ScoreItem, Depends(json_body(ScoreItem))]
BatchBody = Annotated[BatchRequest, Depends(json_body(BatchRequest))]


@router.post("", response_model=ScoreResponse, responses=_ERRORS, openapi_extra=body_openapi(ScoreItem))
async def score(item: ItemBody, models: ModelsDep, state: StateDep) -> Response:
    """Score one payment: fraud probability, decision at the model's threshold, reasons, shadow."""
    state.metrics.batch_size.labels("/v1/score").observe(1)
    return _json(score_items(models, [item], state.metrics)[0])


@router.post(
    "/batch", response_model=BatchResponse, responses=_ERRORS, openapi_extra=body_openapi(BatchRequest)
)
async def score_batch(batch: BatchBody, models: ModelsDep, state: StateDep) -> Response:
    """Score up to ``MAX_BATCH_SIZE`` payments with one model version; results in request order."""
    limit = state.settings.MAX_BATCH_SIZE
    if len(batch.items) > limit:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "items"),
                    "msg": f"List should have at most {limit} items after validation, not {len(batch.items)}",
                    "input": None,
                    "ctx": {"field_type": "List", "max_length": limit, "actual_length": len(batch.items)},
                }
            ]
        )
    state.metrics.batch_size.labels("/v1/score/batch").observe(len(batch.items))
    results = score_items(models, batch.items, state.metrics)
    return _json(
        {"model_version": models.live.version, "threshold": models.live.threshold, "results": results}
    )
