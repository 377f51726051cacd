"""The scoring service locked down (unit tier: the ASGI app in-process, no model needed):
the admin routes need their own key, keys have a minimum length outside local mode, a per-key
in-flight limit answers 429 with Retry-After, and the docs are off outside local mode."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from pydantic import ValidationError

from fraud_core.settings import DEV_API_KEY, MIN_API_KEY_LENGTH
from inference_service.__main__ import main as service_main
from inference_service.core.config import DEV_ADMIN_API_KEY, Settings
from inference_service.main import create_app

SCORING_KEY = "s" * MIN_API_KEY_LENGTH
ADMIN_KEY = "a" * MIN_API_KEY_LENGTH


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://svc")


def _production(tmp_path: Path, **fields: Any) -> Settings:
    values: dict[str, Any] = {
        "APP_ENV": "production",
        "SCORING_API_KEY": SCORING_KEY,
        "ADMIN_API_KEY": ADMIN_KEY,
        "MODEL_DIR": tmp_path,
    }
    return Settings(**(values | fields))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"SCORING_API_KEY": "x" * (MIN_API_KEY_LENGTH - 1)},
            "SCORING_API_KEY is 31 characters long; at least 32",
        ),
        ({"ADMIN_API_KEY": "y" * 10}, "ADMIN_API_KEY is 10 characters long; at least 32"),
        ({"ADMIN_API_KEY": None}, "ADMIN_API_KEY must be set"),
        ({"ADMIN_API_KEY": DEV_ADMIN_API_KEY}, "ADMIN_API_KEY must be set"),
        ({"ADMIN_API_KEY": SCORING_KEY}, "ADMIN_API_KEY must differ from SCORING_API_KEY"),
    ],
)
def test_keys_are_refused_outside_local_mode(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _production(tmp_path, **fields)


def test_local_mode_has_development_keys(tmp_path: Path) -> None:
    settings = Settings(APP_ENV="test", MODEL_DIR=tmp_path)
    assert settings.api_key == DEV_API_KEY and settings.admin_key == DEV_ADMIN_API_KEY
    assert settings.docs_enabled


def test_start_up_refuses_a_short_key_with_a_clear_message_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``python -m inference_service`` runs, in-process: exit 2, the log (JSON on stderr) says
    what is wrong with the key and shows neither key."""
    short = "short-key-9f8e7d"
    environment = {"APP_ENV": "production", "SCORING_API_KEY": short, "ADMIN_API_KEY": ADMIN_KEY}
    for name, value in {**environment, "MODEL_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("uvicorn.run", _served)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = service_main()
    finally:  # the entry point makes the root logger JSON-to-stderr; later tests keep theirs
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 2
    output = capsys.readouterr()
    logged = output.out + output.err
    assert f"SCORING_API_KEY is {len(short)} characters long; at least {MIN_API_KEY_LENGTH}" in logged
    assert short not in logged and ADMIN_KEY not in logged


def _served(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the service started with a short key")


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_admin_reload_needs_the_admin_key_not_the_scoring_key(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        async with _client(_production(tmp_path)) as client:
            return [
                (await client.post("/v1/admin/reload", headers={"X-API-Key": SCORING_KEY})).status_code,
                (await client.post("/v1/admin/reload", headers={"X-Admin-Key": SCORING_KEY})).status_code,
                (await client.post("/v1/admin/reload", headers={"X-Admin-Key": ADMIN_KEY})).status_code,
                # The admin key opens nothing else.
                (await client.get("/v1/model", headers={"X-API-Key": ADMIN_KEY})).status_code,
            ]

    assert _run(scenario()) == [401, 401, 200, 401]


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_are_off_outside_local_mode(tmp_path: Path, path: str) -> None:
    async def status(settings: Settings) -> int:
        async with _client(settings) as client:
            return (await client.get(path)).status_code

    assert _run(status(_production(tmp_path))) == 404
    assert _run(status(Settings(APP_ENV="local", MODEL_DIR=tmp_path))) == 200


def _scope() -> dict[str, Any]:
    headers = [(b"x-api-key", SCORING_KEY.encode()), (b"content-type", b"application/json")]
    return {"type": "http", "method": "POST", "path": "/v1/score", "headers": headers, "query_string": b""}


async def _body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


def _collector(into: list[dict[str, Any]]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            into.append(message)

    return send


def test_in_flight_limit_per_key_answers_429_with_retry_after(tmp_path: Path) -> None:
    """Two requests whose bodies are still arriving hold the limit of 2; a third is refused at
    once, before its body is read; when they finish, the key may send again."""
    app = create_app(_production(tmp_path, MAX_IN_FLIGHT_PER_KEY=2, RETRY_AFTER_S=3))

    async def scenario() -> tuple[list[int], dict[str, Any], int]:
        release = asyncio.Event()
        waiting = asyncio.Queue[None]()

        async def slow_body() -> dict[str, Any]:
            waiting.put_nowait(None)
            await release.wait()
            return await _body()

        answers: list[dict[str, Any]] = []
        held = [asyncio.create_task(app(_scope(), slow_body, _collector(answers))) for _ in range(2)]
        for _ in held:
            await waiting.get()  # both are in flight, reading their bodies
        refused: list[dict[str, Any]] = []
        await app(_scope(), _body, _collector(refused))
        release.set()
        await asyncio.gather(*held)
        again: list[dict[str, Any]] = []
        await app(_scope(), _body, _collector(again))
        return [a["status"] for a in answers], refused[0], again[0]["status"]

    held_statuses, refused, again = _run(scenario())
    # The held requests went through (422: an empty object is not a valid item), and so does the next.
    assert held_statuses == [422, 422] and again == 422
    assert refused["status"] == 429
    assert (b"retry-after", b"3") in refused["headers"]


def test_a_second_admin_reload_while_one_runs_gets_429(tmp_path: Path) -> None:
    settings = _production(tmp_path)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        app = create_app(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            # The first request builds the app's state; the admin limit lives there.
            await client.get("/healthz")
            service = app.app.app.state.service  # type: ignore[attr-defined]  # context -> scoring -> FastAPI
            ident = service.admin_limit.key_id(service.admin_key)
            assert service.admin_limit.acquire(ident)  # a reload is running
            busy = await client.post("/v1/admin/reload", headers={"X-Admin-Key": ADMIN_KEY})
            service.admin_limit.release(ident)
            done = await client.post("/v1/admin/reload", headers={"X-Admin-Key": ADMIN_KEY})
        return busy, done

    busy, done = _run(scenario())
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert done.status_code == 200
