"""The console's FastAPI app: log-in, the queue, a case, verdicts, the health strip, /metrics.

Routes are thin: they check the session (and on every POST its CSRF token), call
:class:`~console.verdicts.Verdicts` or :class:`~console.cases.CaseStore`, and render
:mod:`console.pages`. Errors become pages at this edge only: 409 for a case resolved already,
404 for an unknown case, 403 for a bad CSRF token, 503 when Redis or Kafka fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from console import pages
from console.auth import Session, csrf_ok, read_session, sign_session, verify_password
from console.cases import CaseStore, Verdict
from console.exceptions import CaseConflict, CaseNotFound, ConsoleError, EffectsPending
from console.health import HealthSampler
from console.metrics import ConsoleMetrics
from console.settings import ConsoleSettings
from console.verdicts import Verdicts, analyst_actor

log = logging.getLogger(__name__)

COOKIE = "console_session"
MAX_FORM_BYTES = 8192
ANALYST_VERDICTS = {"CONFIRM": Verdict.CONFIRM, "CLEAR": Verdict.CLEAR}


@dataclass
class Services:
    """What the routes use, built in the lifespan."""

    settings: ConsoleSettings
    users: dict[str, str]
    cases: CaseStore
    verdicts: Verdicts
    metrics: ConsoleMetrics
    health: HealthSampler
    sweeper: Sweeper


class Sweeper(threading.Thread):
    """Resolves timed-out cases by the policy and finishes half-done verdicts, every interval."""

    def __init__(
        self, verdicts: Verdicts, cases: CaseStore, metrics: ConsoleMetrics, interval_s: float
    ) -> None:
        super().__init__(name="case-sweeper", daemon=True)
        self.verdicts, self.cases, self.metrics, self.interval_s = verdicts, cases, metrics, interval_s
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                resolved = self.verdicts.sweep()
                if resolved:
                    log.info("%d overdue cases resolved by the policy", resolved)
                self.metrics.open_cases.set(self.cases.counts()["open"])
            except ConsoleError as exc:
                self.metrics.sweep_errors.inc()
                log.warning("sweep failed, retried in %.0f s: %s", self.interval_s, exc)
            self.stop.wait(self.interval_s)


def _now_s() -> int:
    return int(time.time())


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def session(request: Request) -> Session | None:
    """The request's session, or None when the cookie is missing, forged or expired."""
    settings: ConsoleSettings = request.app.state.settings
    return read_session(request.cookies.get(COOKIE), settings.secret_key, _now_s())


Svc = Annotated[Services, Depends(services)]
Sess = Annotated[Session | None, Depends(session)]


def create_app(settings: ConsoleSettings) -> FastAPI:
    """The console app; its lifespan connects to Redis, Kafka and the registry and starts the
    health sampler and the sweeper (both stopped on shutdown)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = ConsoleMetrics()
        cases = CaseStore.from_url(settings.redis_connect_url, retention_s=settings.CASE_RETENTION_S)
        verdicts = Verdicts(settings, cases, metrics)
        health = HealthSampler(settings.metrics_urls, settings.HEALTH_INTERVAL_S)
        sweeper = Sweeper(verdicts, cases, metrics, settings.SWEEP_INTERVAL_S)
        app.state.services = Services(settings, settings.users(), cases, verdicts, metrics, health, sweeper)
        health.start()
        sweeper.start()
        log.info("console on http://%s:%d", settings.CONSOLE_HOST, settings.CONSOLE_PORT)
        try:
            yield
        finally:
            sweeper.stop.set()
            health.stop.set()
            sweeper.join(timeout=30)
            verdicts.close()
            cases.close()

    app = FastAPI(
        title="Fraud review console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings

    def with_cookie(response: Response, s: Session) -> Response:
        response.set_cookie(
            COOKIE,
            sign_session(s, settings.secret_key),
            max_age=max(s.expires_at_s - _now_s(), 1),
            httponly=True,
            samesite="strict",
            secure=settings.APP_ENV not in ("local", "test"),
        )
        return response

    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

    def forbidden(user: str | None, csrf: str) -> HTMLResponse:
        text = "The form's CSRF token is missing or not this session's. Reload the page and try again."
        return HTMLResponse(pages.message_page("Refused", text, user, csrf), status_code=403)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics(svc: Svc) -> Response:
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(sess: Sess) -> Response:
        s = sess or Session.anonymous(_now_s(), settings.SESSION_TTL_S)
        return with_cookie(HTMLResponse(pages.login_page(s.csrf)), s)

    @app.post("/login")
    async def login(request: Request, svc: Svc, sess: Sess) -> Response:
        data = await form(request)
        if not csrf_ok(sess, data.get("csrf")):
            return forbidden(None, "")
        assert sess is not None
        name, password = data.get("username", ""), data.get("password", "")
        stored = svc.users.get(name)
        ok = stored is not None and await run_in_threadpool(verify_password, password, stored)
        svc.metrics.logins.labels("ok" if ok else "refused").inc()
        if not ok:
            log.info("log-in refused for %r", name[:32])
            page = pages.login_page(sess.csrf, "Unknown analyst or wrong password.")
            return with_cookie(HTMLResponse(page, status_code=401), sess)
        log.info("analyst %s logged in", name)
        fresh = sess.logged_in(name, _now_s(), settings.SESSION_TTL_S)
        return with_cookie(RedirectResponse("/", status_code=303), fresh)

    @app.post("/logout")
    async def logout(request: Request, sess: Sess) -> Response:
        data = await form(request)
        if sess is None or not csrf_ok(sess, data.get("csrf")):
            return forbidden(sess.user if sess else None, sess.csrf if sess else "")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def queue(svc: Svc, sess: Sess) -> Response:
        if sess is None or sess.user is None:
            return to_login()
        try:
            body = pages.queue_page(
                svc.cases.open_cases(),
                svc.cases.resolved_cases(),
                svc.cases.counts(),
                settings.REVIEW_TIMEOUT_S,
                sess.user,
                sess.csrf,
            )
        except ConsoleError as exc:
            return HTMLResponse(pages.message_page("Unavailable", str(exc), sess.user, sess.csrf), 503)
        return HTMLResponse(body)

    @app.get("/cases/{event_id}", response_class=HTMLResponse)
    def case(event_id: str, svc: Svc, sess: Sess) -> Response:
        if sess is None or sess.user is None:
            return to_login()
        try:
            found = svc.cases.get(event_id)
            return HTMLResponse(
                pages.case_page(found, svc.cases.on_hold(found.card_id), sess.user, sess.csrf)
            )
        except CaseNotFound as exc:
            return HTMLResponse(pages.message_page("No such case", str(exc), sess.user, sess.csrf), 404)
        except ConsoleError as exc:
            return HTMLResponse(pages.message_page("Unavailable", str(exc), sess.user, sess.csrf), 503)

    @app.post("/cases/{event_id}/verdict", response_class=HTMLResponse)
    async def verdict(event_id: str, request: Request, svc: Svc, sess: Sess) -> Response:
        if sess is None or sess.user is None:
            return to_login()
        data = await form(request)
        if not csrf_ok(sess, data.get("csrf")):
            return forbidden(sess.user, sess.csrf)
        chosen = ANALYST_VERDICTS.get(data.get("verdict", ""))
        if chosen is None:
            text = f"field 'verdict'={data.get('verdict', '')[:20]!r}: must be CONFIRM or CLEAR"
            return HTMLResponse(pages.message_page("Invalid verdict", text, sess.user, sess.csrf), 422)
        try:
            resolved = await run_in_threadpool(
                svc.verdicts.resolve, event_id, chosen, analyst_actor(sess.user)
            )
        except CaseConflict as exc:
            found = await run_in_threadpool(svc.cases.get, event_id)
            page = pages.case_page(found, False, sess.user, sess.csrf, error=f"Not recorded: {exc}.")
            return HTMLResponse(page, status_code=409)
        except CaseNotFound as exc:
            return HTMLResponse(pages.message_page("No such case", str(exc), sess.user, sess.csrf), 404)
        except EffectsPending as exc:
            text = f"The verdict is recorded; its effects are retried in the background: {exc}"
            return HTMLResponse(pages.message_page("Effects pending", text, sess.user, sess.csrf), 503)
        except ConsoleError as exc:
            text = f"The verdict was not recorded; try again: {exc}"
            return HTMLResponse(pages.message_page("Unavailable", text, sess.user, sess.csrf), 503)
        done = (
            "Fraud confirmed: card blocked, risk tier raised"
            if chosen.blocks
            else "Cleared: review hold lifted"
        )
        page = pages.case_page(resolved, False, sess.user, sess.csrf, message=f"{done}; label written.")
        return HTMLResponse(page)

    @app.get("/api/health")
    def health(svc: Svc, sess: Sess) -> Response:
        if sess is None or sess.user is None:
            return JSONResponse({"detail": "log in first"}, status_code=401)
        body = svc.health.latest.to_json() | {"cases": svc.cases.counts()}
        return JSONResponse(body)

    return app
