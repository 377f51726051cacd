"""``POST /v1/score`` and ``POST /v1/score/batch``, served as plain ASGI in front of the FastAPI app.

The stream job calls the batch route hundreds of times a second, so its fixed cost per request
counts as much as its cost per row. Through FastAPI a request passed eight middleware layers
(three of them for the body limit), a dependency graph solved per request (API key, state,
models, body) and a ``Request`` wrapper: about 0.3 ms of CPU before the first row was scored
(``deploy/CAPACITY.md`` has the figures). Here the same checks are a few plain function calls.
The contract is unchanged: 401 for a missing or wrong ``X-API-Key``, 429 with ``Retry-After``
when ``MAX_IN_FLIGHT_PER_KEY`` requests of the key are already being served, 413 for a body over
``MAX_BODY_BYTES``, 422 in FastAPI's format naming the field (and echoing the value), 503 until a
model is loaded. The FastAPI app still serves everything else and the OpenAPI document, which
describes these two operations through :func:`openapi_paths`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from inference_service.api.deps import ServiceState, matching_key
from inference_service.api.payloads import BatchRequest, BatchResponse, ScoreItem, ScoreResponse
from inference_service.model_registry import ActiveModels
from inference_service.scoring import score_items

_JSON = (b"content-type", b"application/json")
_UNAUTHORIZED = orjson.dumps({"detail": "missing or invalid X-API-Key"})
_NOT_READY = orjson.dumps({"detail": "no model loaded yet; train one (make model)"})
_NOT_ALLOWED = orjson.dumps({"detail": "Method Not Allowed"})
_TOO_LARGE = b"Content Too Large"
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


@dataclass(frozen=True, slots=True)
class Route:
    """What :class:`~inference_service.api.middleware.RequestContextMiddleware` reads as
    ``scope["route"]`` to label the latency histogram (Starlette puts its route object there)."""

    path: str


SCORE = Route("/v1/score")
BATCH = Route("/v1/score/batch")


class RequestError(Exception):
    """A request refused with ``status`` and a ready JSON (or text) ``body``."""

    def __init__(self, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = (_JSON,)) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = list(headers)


def validation_error_body(errors: Sequence[Any]) -> bytes:
    """FastAPI's 422 body, made safe for any input: the echoed ``input`` may hold NaN or infinity
    (accepted by the JSON parser, refused by the bounds; orjson writes them as null) or raw bytes
    that are not UTF-8 (an unparsable body; decoded with replacement characters).
    """
    encoded = jsonable_encoder(errors, custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
    return orjson.dumps({"detail": encoded})


def _invalid(exc: ValidationError) -> RequestError:
    errors = exc.errors(include_url=False)
    for err in errors:
        err["loc"] = ("body", *err["loc"])
    return RequestError(422, validation_error_body(errors))


class ScoringRoutes:
    """The two scoring routes; any other request goes on to ``app`` (the FastAPI app)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self._routes: dict[str, tuple[Route, Callable[[bytes], bytes]]] = {
            SCORE.path: (SCORE, self._score),
            BATCH.path: (BATCH, self._score_batch),
        }
        self._batch_size = {r.path: state.metrics.batch_size.labels(r.path) for r in (SCORE, BATCH)}
        self._limit = state.scoring_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route[0]
        try:
            if scope["method"] != "POST":
                raise RequestError(405, _NOT_ALLOWED, [_JSON, (b"allow", b"POST")])
            self._check_length(scope)
            ident = self._authorize(scope)
            if not self._limit.acquire(ident):
                raise RequestError(429, self._limit.body, [_JSON, (b"retry-after", self._limit.retry_after)])
            try:
                body = await self._read_body(receive)
                status, content, headers = 200, route[1](body), [_JSON]
            finally:
                self._limit.release(ident)
        except RequestError as err:
            status, content, headers = err.status, err.body, err.headers
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})

    def _authorize(self, scope: Scope) -> bytes:
        """The identity of the request's valid key (for the per-key limit), else 401."""
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                if (key := matching_key(value, self.state.api_keys)) is not None:
                    return self._limit.key_id(key)
                break
        raise RequestError(401, _UNAUTHORIZED, [_JSON, (b"www-authenticate", b"X-API-Key")])

    def _check_length(self, scope: Scope) -> None:
        """413 before anything else when ``Content-Length`` announces too large a body."""
        limit = self.state.settings.MAX_BODY_BYTES
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise RequestError(413, _TOO_LARGE, _TEXT)

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body; 413 as soon as it exceeds ``MAX_BODY_BYTES`` (chunked uploads too)."""
        limit = self.state.settings.MAX_BODY_BYTES
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                raise RequestError(400, b"")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, _TOO_LARGE, _TEXT)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _models(self) -> ActiveModels:
        active = self.state.registry.active
        if active is None:
            raise RequestError(503, _NOT_READY)
        return active

    def _score(self, body: bytes) -> bytes:
        try:
            item = ScoreItem.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        models = self._models()
        self._batch_size[SCORE.path].observe(1)
        return orjson.dumps(score_items(models, [item], self.state.metrics)[0])

    def _score_batch(self, body: bytes) -> bytes:
        try:
            batch = BatchRequest.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        limit = self.state.settings.MAX_BATCH_SIZE
        n = len(batch.items)
        if n > limit:
            raise RequestError(
                422,
                validation_error_body(
                    [
                        {
                            "type": "too_long",
                            "loc": ("body", "items"),
                            "msg": f"List should have at most {limit} items after validation, not {n}",
                            "input": None,
                            "ctx": {"field_type": "List", "max_length": limit, "actual_length": n},
                        }
                    ]
                ),
            )
        models = self._models()
        self._batch_size[BATCH.path].observe(n)
        results = score_items(models, batch.items, self.state.metrics)
        return orjson.dumps(
            {"model_version": models.live.version, "threshold": models.live.threshold, "results": results}
        )


def _operation(summary: str, body: type[BaseModel], response: type[BaseModel]) -> dict[str, Any]:
    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}

    return {
        "post": {
            "tags": ["score"],
            "summary": summary,
            "security": [{"APIKeyHeader": []}],
            "requestBody": {"required": True, "content": ref(body)},
            "responses": {
                "200": {"description": "scored", "content": ref(response)},
                "401": {"description": "missing or invalid X-API-Key"},
                "413": {"description": "request body larger than MAX_BODY_BYTES"},
                "429": {"description": "too many requests of this key in flight; see Retry-After"},
                "422": {"description": "invalid body; `detail` names each invalid field and its value"},
                "503": {"description": "no model loaded yet"},
            },
        }
    }


def openapi_paths() -> tuple[dict[str, Any], tuple[type[BaseModel], ...]]:
    """The OpenAPI path items of the two routes, and the models their schemas refer to."""
    paths = {
        SCORE.path: _operation(
            "Score one payment: fraud probability, decision at the model's threshold, reasons, shadow",
            ScoreItem,
            ScoreResponse,
        ),
        BATCH.path: _operation(
            "Score up to MAX_BATCH_SIZE payments with one model version; results in request order",
            BatchRequest,
            BatchResponse,
        ),
    }
    return paths, (ScoreItem, BatchRequest, ScoreResponse, BatchResponse)
