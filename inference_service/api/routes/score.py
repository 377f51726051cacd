"""``POST /v1/score`` and ``POST /v1/score/batch``, served as plain ASGI in front of the FastAPI app.

The stream job calls the batch route hundreds of times a second, so its fixed cost per request
counts as much as its cost per row. Through FastAPI a request passed eight middleware layers
(three of them for the body limit), a dependency graph solved per request (API key, state,
models, body) and a ``Request`` wrapper: about 0.3 ms of CPU before the first row was scored
(``deploy/CAPACITY.md`` has the figures). Here the same checks are a few plain function calls.
The interface (docs/INTERFACES.md) is unchanged: 401 for a missing or wrong ``X-API-Key``, 429 with ``Retry-After``
when ``MAX_IN_FLIGHT_PER_KEY`` requests of the key are already being served, 413 for a body over
``MAX_BODY_BYTES``, 422 in FastAPI's format naming the field (and echoing the value), 503 until a
model is loaded. The FastAPI app still serves everything else and the OpenAPI document, which
describes these two operations through :func:`openapi_paths`.

The batch route also takes the binary columnar body of :mod:`fraud_core.scoring_wire`
(``Content-Type: application/x-msgpack``; JSON stays the default) and answers in it when ``Accept``
names it; any other content type is a 415.

This layer is also the one place where the scoring key is checked: for these routes and for every
other path under ``/v1/`` except ``/v1/admin/`` (which takes the admin key), before the request
reaches FastAPI. ``SCORING_API_KEY_NEXT`` is accepted alongside the current key during a rotation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from fraud_core.scoring_wire import JSON, MSGPACK, encode_response
from inference_service.api.columnar import InvalidColumns, parse_batch
from inference_service.api.deps import ServiceState, matching_key
from inference_service.api.payloads import BatchRequest, BatchResponse, ScoreItem, ScoreResponse
from inference_service.model_registry import ActiveModels
from inference_service.scoring import score_items, score_rows, to_matrix

_JSON = (b"content-type", JSON.encode())
_MSGPACK = (b"content-type", MSGPACK.encode())
_JSON_TYPES = (b"", JSON.encode())
_UNSUPPORTED = orjson.dumps(
    {"detail": f"unsupported Content-Type: /v1/score/batch takes {JSON} (the default) or {MSGPACK}"}
)
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


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a batch request is written (``binary_in``) and how its answer must be (``binary_out``)."""

    binary_in: bool
    binary_out: bool


_JSON_ONLY = Encoding(False, False)


def negotiate(scope: Scope) -> Encoding:
    """The encodings of a batch request, from ``Content-Type`` and ``Accept``; 415 for a body type
    other than JSON (also when no type is given, as before) or msgpack."""
    content_type = b""
    accept = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.partition(b";")[0].strip().lower()
        elif name == b"accept":
            accept = value.lower()
    if content_type in _JSON_TYPES:
        binary_in = False
    elif content_type == _MSGPACK[1]:
        binary_in = True
    else:
        raise RequestError(415, _UNSUPPORTED)
    binary_out = _MSGPACK[1] in (part.partition(b";")[0].strip() for part in accept.split(b","))
    return Encoding(binary_in, binary_out)


def _authorized_elsewhere(path: str) -> bool:
    """Paths whose key is checked elsewhere or not at all: the admin routes (admin key) and
    everything outside ``/v1/`` (probes, metrics, the API document)."""
    return not path.startswith("/v1/") or path.startswith("/v1/admin/")


class ScoringRoutes:
    """The two scoring routes, and the scoring-key check of every ``/v1/`` path; any other
    request goes on to ``app`` (the FastAPI app)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state
        self._routes: dict[str, tuple[Route, Callable[[bytes, Encoding], tuple[bytes, bool]]]] = {
            SCORE.path: (SCORE, self._score),
            BATCH.path: (BATCH, self._score_batch),
        }
        self._batch_size = {r.path: state.metrics.batch_size.labels(r.path) for r in (SCORE, BATCH)}
        self._limit = state.scoring_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._routes.get(scope["path"])
        if route is None:
            if _authorized_elsewhere(scope["path"]):
                await self.app(scope, receive, send)
                return
            try:
                self._authorize(scope)
            except RequestError as err:
                await _answer(send, err.status, err.body, err.headers)
                return
            await self.app(scope, receive, send)
            return
        scope["route"] = route[0]
        try:
            if scope["method"] != "POST":
                raise RequestError(405, _NOT_ALLOWED, [_JSON, (b"allow", b"POST")])
            self._check_length(scope)
            ident = self._authorize(scope)
            encoding = negotiate(scope) if route[0] is BATCH else _JSON_ONLY
            if not self._limit.acquire(ident):
                raise RequestError(429, self._limit.body, [_JSON, (b"retry-after", self._limit.retry_after)])
            try:
                body = await self._read_body(receive)
                content, binary = route[1](body, encoding)
                status, headers = 200, [_MSGPACK if binary else _JSON]
            finally:
                self._limit.release(ident)
        except RequestError as err:
            status, content, headers = err.status, err.body, err.headers
        await _answer(send, status, content, headers)

    def _authorize(self, scope: Scope) -> bytes:
        """The identity of the request's valid scoring key (for the per-key limit), else 401.

        The only check of the scoring key in the service (see the module's docstring)."""
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

    def _score(self, body: bytes, encoding: Encoding) -> tuple[bytes, bool]:
        try:
            item = ScoreItem.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        models = self._models()
        self._batch_size[SCORE.path].observe(1)
        return orjson.dumps(score_items(models, [item], self.state.metrics)[0]), False

    def _score_batch(self, body: bytes, encoding: Encoding) -> tuple[bytes, bool]:
        if encoding.binary_in:
            try:
                columns = parse_batch(body)
            except InvalidColumns as exc:
                raise RequestError(422, validation_error_body(exc.errors)) from exc
            event_ids, x = columns.event_ids, columns.x
        else:
            try:
                batch = BatchRequest.model_validate_json(body)
            except ValidationError as exc:
                raise _invalid(exc) from exc
            event_ids, x = [item.event_id for item in batch.items], to_matrix(batch.items)
        self._check_batch_size(len(event_ids))
        models = self._models()
        self._batch_size[BATCH.path].observe(len(event_ids))
        results = score_rows(models, event_ids, x, self.state.metrics)
        live = models.live
        if encoding.binary_out:
            return encode_response(results, live.version, live.threshold, live.block_threshold), True
        return orjson.dumps(
            {"model_version": live.version, "threshold": live.threshold, "results": results}
        ), False

    def _check_batch_size(self, n: int) -> None:
        limit = self.state.settings.MAX_BATCH_SIZE
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


async def _answer(send: Send, status: int, content: bytes, headers: Sequence[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(content)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": content})


def _operation(
    summary: str, body: type[BaseModel], response: type[BaseModel], columnar: bool = False
) -> dict[str, Any]:
    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}

    binary = {
        MSGPACK: {
            "schema": {"type": "string", "format": "binary"},
            "description": "columns in msgpack; layout in fraud_core/scoring_wire.py (README, API)",
        }
    }
    return {
        "post": {
            "tags": ["score"],
            "summary": summary,
            "security": [{"APIKeyHeader": []}],
            "requestBody": {"required": True, "content": {**ref(body), **(binary if columnar else {})}},
            "responses": {
                "200": {
                    "description": "scored; in msgpack columns when Accept names it (batch only)",
                    "content": {**ref(response), **(binary if columnar else {})},
                },
                "401": {"description": "missing or invalid X-API-Key"},
                "413": {"description": "request body larger than MAX_BODY_BYTES"},
                **(
                    {"415": {"description": f"Content-Type neither {JSON} nor {MSGPACK}"}} if columnar else {}
                ),
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
            columnar=True,
        ),
    }
    return paths, (ScoreItem, BatchRequest, ScoreResponse, BatchResponse)
