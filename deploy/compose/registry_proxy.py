"""The schema registry's only door in compose (``python -m deploy.compose.registry_proxy``).

Apicurio 3.0.9 authenticates only through an OIDC server, which compose does not run, so without
this proxy anyone who reaches the registry could lower a subject's compatibility level or register
any schema. Here Apicurio sits on a network of its own (``registry-backend`` in docker-compose.yml)
with Kafka and this proxy; every other service and the published port 8081 reach it through the
proxy, which lets through:

- for everyone: reads, i.e. ``GET``/``HEAD``, and the two ``POST`` calls of the Confluent API that
  only read (a schema's id under a subject, which every producer asks for, and a compatibility test);
- with the writer's credentials (HTTP Basic, the bootstrap job's ``REGISTRY_WRITER_*``): everything
  else (registering, ``PUT /config``, deletes, the v2/v3 APIs' writes).

The path is checked as it arrives (not decoded or normalised) and forwarded byte for byte, so the
registry routes exactly the path that was judged. Method-override headers and the credentials are
not forwarded.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fraud_core.cli import cli_config, parse_settings

log = logging.getLogger("registry-proxy")

READ_METHODS = frozenset({"GET", "HEAD"})
_SUBJECT = r"[A-Za-z0-9._-]+"
# POSTs of the Confluent-compatible API that change nothing: look a schema's id up under a subject,
# test a schema's compatibility. Matched against the raw path: no "%", "/" or ".." can hide a write.
READ_POSTS = (
    re.compile(rf"/apis/ccompat/v7/subjects/{_SUBJECT}"),
    re.compile(rf"/apis/ccompat/v7/compatibility/subjects/{_SUBJECT}/versions(/(latest|[0-9]+))?"),
)
# Not forwarded: per-hop headers, our credentials, and headers some frameworks read as the method.
DROPPED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "authorization",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
)
DROPPED_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


class ProxySettings(BaseSettings):
    """Where the registry is and who may write to it."""

    model_config = cli_config(
        "python -m deploy.compose.registry_proxy", {"PROXY_HOST": "host", "PROXY_PORT": "port"}
    )

    REGISTRY_UPSTREAM_URL: str = Field(
        "http://schema-registry:8080", description="The registry behind the proxy (scheme, host, port)."
    )
    REGISTRY_WRITER_USERNAME: str = Field(
        "fraud_bootstrap", min_length=1, description="The one user allowed to write (the bootstrap job)."
    )
    REGISTRY_WRITER_PASSWORD: SecretStr = Field(
        description="Its password (environment only, never a flag); at least 16 characters.",
    )
    PROXY_HOST: str = Field("127.0.0.1", description="Address to listen on.")
    PROXY_PORT: int = Field(8080, ge=1, le=65535, description="Port to listen on.")
    PROXY_TIMEOUT_S: float = Field(10.0, gt=0, description="Timeout of each call to the registry.")

    @field_validator("REGISTRY_WRITER_PASSWORD")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value


def is_read(method: str, raw_path: str) -> bool:
    """Whether a request changes nothing in the registry, so anyone may make it."""
    if method in READ_METHODS:
        return True
    return method == "POST" and any(p.fullmatch(raw_path) for p in READ_POSTS)


def is_writer(authorization: str | None, username: str, password: SecretStr) -> bool:
    """Whether an ``Authorization`` header carries the writer's Basic credentials (constant-time)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, given = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(user.encode(), username.encode())
    password_ok = hmac.compare_digest(given.encode(), password.get_secret_value().encode())
    return bool(sep) and user_ok and password_ok


def create_app(settings: ProxySettings, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """The proxy as an ASGI app (``transport`` replaces the network in unit tests)."""
    upstream = settings.REGISTRY_UPSTREAM_URL.rstrip("/")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=settings.PROXY_TIMEOUT_S, transport=transport) as client:
            app.state.client = client
            yield

    async def forward(request: Request) -> Response:
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        method = request.method
        if not is_read(method, raw_path) and not is_writer(
            request.headers.get("authorization"),
            settings.REGISTRY_WRITER_USERNAME,
            settings.REGISTRY_WRITER_PASSWORD,
        ):
            client = request.client.host if request.client else "?"
            log.warning(
                "refused %s %s from %s: registry writes need the writer's credentials",
                method,
                raw_path,
                client,
            )
            return Response(
                "registry writes need the writer's credentials\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="schema registry writes"'},
                media_type="text/plain",
            )
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = httpx.URL(upstream + raw_path + (f"?{query}" if query else ""))
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in DROPPED_REQUEST_HEADERS]
        try:
            answer = await request.app.state.client.request(
                method, url, headers=headers, content=await request.body()
            )
        except httpx.HTTPError as exc:
            log.error("registry at %s unreachable: %r", upstream, exc)
            return Response(f"registry unreachable: {type(exc).__name__}\n", status_code=502)
        return Response(
            answer.content,
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k.lower() not in DROPPED_RESPONSE_HEADERS},
        )

    every = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=every)], lifespan=lifespan)


def main() -> None:
    settings = parse_settings(ProxySettings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.info(
        "proxying %s on %s:%d; writes only as %s",
        settings.REGISTRY_UPSTREAM_URL,
        settings.PROXY_HOST,
        settings.PROXY_PORT,
        settings.REGISTRY_WRITER_USERNAME,
    )
    uvicorn.run(create_app(settings), host=settings.PROXY_HOST, port=settings.PROXY_PORT, log_level="warning")


if __name__ == "__main__":
    main()
