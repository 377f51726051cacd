"""The console's FastAPI app: log-in, the queue, a case, verdicts, the health strip, /metrics.

Routes are thin: they check the session (and on every POST its CSRF token), call
:class:`~console.verdicts.Verdicts` or :class:`~fraud_core.review_cases.CaseStore`, and render
:mod:`console.pages`. They come in three routers, one per concern, which :func:`create_app` mounts:
:data:`operations` (``/healthz``, ``/metrics``, ``/api/health``), :data:`sign_in` (log-in and
log-out) and :data:`review` (the queue, the model comparisons, a case and its verdict). What a route
needs comes through dependencies (the services the lifespan built, the session, the form, the
settings), never from a closure. Errors become pages at this edge only: 409 for a case resolved already,
404 for an unknown case, 403 for a bad CSRF token or a confirmation that needs a lead, 413 for a
form body over the limit (refused before it is read), 429 with ``Retry-After`` for a log-in
during its wait (:mod:`console.sessions`), 503 when Redis or Kafka fail.

Log-in does the same work for an unknown user as for a known one: the password is checked
against a dummy hash, so the response time does not say which names exist.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import redis
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive

from console import comparisons, pages
from console.auth import (
    ITERATIONS,
    Session,
    User,
    csrf_ok,
    hash_password,
    read_session,
    read_session_id,
    sign_session,
    sign_session_id,
    verify_password,
)
from console.exceptions import ConsoleError, EffectsPending
from console.health import HealthSampler
from console.metrics import ConsoleMetrics
from console.sessions import LoginThrottle, SessionStore
from console.settings import ConsoleSettings
from console.verdicts import Verdicts, analyst_actor
from fraud_core.exceptions import CaseConflict, CaseNotFound
from fraud_core.review_cases import CaseStore, Verdict

log = logging.getLogger(__name__)

COOKIE = "console_session"
SESSION_ID_PREFIX = "sid."  # a server-side session's signed id; anything else is a signed anonymous session
MAX_FORM_BYTES = 8192
MAX_FORM_FIELDS = 16  # the console's forms have at most three
ANALYST_VERDICTS = {"CONFIRM": Verdict.CONFIRM, "CLEAR": Verdict.CLEAR}


@dataclass
class Services:
    """What the routes use, built in the lifespan."""

    settings: ConsoleSettings
    users: dict[str, User]
    sessions: SessionStore
    throttle: LoginThrottle
    dummy_hash: str
    cases: CaseStore
    verdicts: Verdicts
    metrics: ConsoleMetrics
    health: HealthSampler
    sweeper: Sweeper


class Sweeper(threading.Thread):
    """Resolves timed-out cases by the policy and finishes half-done verdicts, every interval.

    Any exception of a sweep is logged and counted, and the loop goes on: a sweeper that died
    silently would leave every case to wait forever while the console looked healthy. The time of
    the last good sweep is kept for ``/healthz`` (:meth:`problem`).
    """

    def __init__(
        self, verdicts: Verdicts, cases: CaseStore, metrics: ConsoleMetrics, interval_s: float
    ) -> None:
        super().__init__(name="case-sweeper", daemon=True)
        self.verdicts, self.cases, self.metrics, self.interval_s = verdicts, cases, metrics, interval_s
        self.stop = threading.Event()
        self.started_at = time.time()
        self.last_good: float | None = None

    def run(self) -> None:
        self.started_at = time.time()
        while not self.stop.is_set():
            try:
                resolved = self.verdicts.sweep()
                if resolved:
                    log.info("%d overdue cases resolved by the policy", resolved)
                self.metrics.open_cases.set(self.cases.counts()["open"])
                self.last_good = time.time()
                self.metrics.last_good_sweep.set(self.last_good)
            except Exception as exc:  # the loop must outlive any one sweep
                self.metrics.sweep_errors.inc()
                log.error("sweep failed, retried in %.0f s: %s", self.interval_s, exc, exc_info=exc)
            self.stop.wait(self.interval_s)

    def problem(self, now: float, stale_s: float) -> str:
        """Why the sweeper is unhealthy, or "" when it is fine."""
        if not self.is_alive():
            return "the sweeper is not running"
        since = self.last_good if self.last_good is not None else self.started_at
        if now - since > stale_s:
            what = "no good sweep since start" if self.last_good is None else "the last good sweep"
            return f"{what} {now - since:.0f} s ago (limit {stale_s:g} s)"
        return ""


def _now_s() -> int:
    return int(time.time())


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


class BodyTooLarge(ConsoleError):
    """A form body over :data:`MAX_FORM_BYTES`; refused before (or while) it is read."""


def dummy_hash(users: dict[str, User]) -> str:
    """A hash of a random password, with the iterations most users have: checking a password
    against it costs what checking a real user's costs."""
    counts = Counter(int(u.password_hash.split("$")[1]) for u in users.values())
    iterations = counts.most_common(1)[0][0] if counts else ITERATIONS
    return hash_password(secrets.token_urlsafe(16), iterations=iterations)


def server_session_id(request: Request) -> str | None:
    """The server-side session id the request's cookie names, when its signature holds."""
    cookie = request.cookies.get(COOKIE, "")
    if not cookie.startswith(SESSION_ID_PREFIX):
        return None
    return read_session_id(cookie[len(SESSION_ID_PREFIX) :], request.app.state.settings.secret_key)


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` as soon as the body read so far passes ``limit``."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"the form body is over {limit} bytes")
        return message

    return capped


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form's text fields, parsed by Starlette (python-multipart).

    Raises BodyTooLarge from the declared length, before a byte is read, or, for an undeclared
    (chunked) body, as soon as what was read passes the limit: the parser reads through a capped
    ``receive``, so it never holds more than :data:`MAX_FORM_BYTES` plus one chunk.
    """
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise BodyTooLarge(f"content-length {declared[:20]!r} is over {MAX_FORM_BYTES} bytes")
    capped = Request(request.scope, _capped(request.receive, MAX_FORM_BYTES))
    form = await capped.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    return {name: value for name, value in form.items() if isinstance(value, str)}


def session(request: Request) -> Session | None:
    """The request's session, or None when the cookie is missing, forged, expired or ended.

    A logged-in session is only ever server-side; a signed cookie that names a user is refused.
    """
    settings: ConsoleSettings = request.app.state.settings
    cookie = request.cookies.get(COOKIE)
    if cookie and cookie.startswith(SESSION_ID_PREFIX):
        session_id = server_session_id(request)
        if session_id is None:
            return None
        svc: Services = request.app.state.services
        try:
            return svc.sessions.read(session_id, svc.users, _now_s())
        except ConsoleError as exc:
            log.warning("session not readable, treated as logged out: %s", exc)
            return None
    anonymous = read_session(cookie, settings.secret_key, _now_s())
    return anonymous if anonymous is not None and anonymous.user is None else None


def app_settings(request: Request) -> ConsoleSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


Svc = Annotated[Services, Depends(services)]
Sess = Annotated[Session | None, Depends(session)]
Form = Annotated[dict[str, str], Depends(form_fields)]
Conf = Annotated[ConsoleSettings, Depends(app_settings)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect to Redis, Kafka and the registry with ``app.state.settings``, start the health sampler
    and the sweeper, and stop them all on shutdown."""
    settings: ConsoleSettings = app.state.settings
    metrics = ConsoleMetrics()
    cases = CaseStore.from_url(settings.redis_connect_url, retention_s=settings.CASE_RETENTION_S)
    verdicts = Verdicts(settings, cases, metrics)
    health = HealthSampler(settings.metrics_urls, settings.HEALTH_INTERVAL_S)
    sweeper = Sweeper(verdicts, cases, metrics, settings.SWEEP_INTERVAL_S)
    users = settings.users()
    client = redis.Redis.from_url(settings.redis_connect_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    throttle = LoginThrottle(
        client,
        user_free=settings.LOGIN_USER_FREE_FAILURES,
        address_free=settings.LOGIN_ADDRESS_FREE_FAILURES,
        base_wait_s=settings.LOGIN_BASE_WAIT_S,
        max_wait_s=settings.LOGIN_MAX_WAIT_S,
        window_s=settings.LOGIN_WINDOW_S,
    )
    app.state.services = Services(
        settings,
        users,
        SessionStore(client, settings.SESSION_TTL_S),
        throttle,
        dummy_hash(users),
        cases,
        verdicts,
        metrics,
        health,
        sweeper,
    )
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
        client.close()


def create_app(settings: ConsoleSettings) -> FastAPI:
    """The console app: the three routers and the 413 page, on ``settings``; its :func:`lifespan`
    connects to Redis, Kafka and the registry and starts the health sampler and the sweeper (both
    stopped on shutdown)."""
    app = FastAPI(
        title="Fraud review console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    app.add_exception_handler(BodyTooLarge, too_large)  # type: ignore[arg-type]
    for router in (operations, sign_in, review):
        app.include_router(router)
    return app


# Responses more than one route gives.


def with_cookie(
    response: Response, s: Session, settings: ConsoleSettings, session_id: str | None = None
) -> Response:
    """Set the cookie: the server-side session's id, or the signed anonymous session."""
    assert session_id is not None or s.user is None, "a logged-in session is only server-side"
    response.set_cookie(
        COOKIE,
        SESSION_ID_PREFIX + sign_session_id(session_id, settings.secret_key)
        if session_id
        else sign_session(s, settings.secret_key),
        max_age=max(s.expires_at_s - _now_s(), 1),
        httponly=True,
        samesite="strict",
        secure=settings.APP_ENV not in ("local", "test"),
    )
    return response


def to_login() -> Response:
    return RedirectResponse("/login", status_code=303)


def forbidden(request: Request, user: str | None, csrf: str) -> Response:
    text = "The form's CSRF token is missing or not this session's. Reload the page and try again."
    return pages.message_page("Refused", text, user, csrf).response(request, 403)


def throttled(request: Request, sess: Session, wait_s: float, settings: ConsoleSettings) -> Response:
    retry = max(1, math.ceil(wait_s))
    page = pages.login_page(sess.csrf, f"Too many failed log-ins: try again in {retry} s.")
    response = with_cookie(page.response(request, 429), sess, settings)
    response.headers["Retry-After"] = str(retry)
    return response


def unavailable(request: Request, text: str, sess: Session | None = None, status: int = 503) -> Response:
    user, csrf = (sess.user, sess.csrf) if sess is not None else (None, "")
    return pages.message_page("Unavailable", text, user, csrf).response(request, status)


def no_such_case(request: Request, exc: CaseNotFound, sess: Session) -> Response:
    return pages.message_page("No such case", str(exc), sess.user, sess.csrf).response(request, 404)


async def too_large(request: Request, exc: BodyTooLarge) -> Response:
    text = f"{exc}. Nothing was done."
    return pages.message_page("Request too large", text).response(request, 413)


# Operations: the probes and the metrics.
operations = APIRouter()


@operations.get("/healthz")
def healthz(svc: Svc) -> Response:
    now = time.time()
    sweeper = svc.sweeper
    problem = sweeper.problem(now, svc.settings.SWEEP_STALE_S)
    body: dict[str, object] = {
        "status": "failing" if problem else "ok",
        "last_good_sweep_at": None
        if sweeper.last_good is None
        else datetime.fromtimestamp(sweeper.last_good, UTC).isoformat(),
    }
    if problem:
        body["problem"] = problem
    return JSONResponse(body, status_code=503 if problem else 200)


@operations.get("/metrics")
def metrics(svc: Svc) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@operations.get("/api/health")
def health(svc: Svc, sess: Sess) -> Response:
    if sess is None or sess.user is None:
        return JSONResponse({"detail": "log in first"}, status_code=401)
    body = svc.health.latest.to_json() | {"cases": svc.cases.counts()}
    return JSONResponse(body)


# Sign-in: the log-in form, log-in (throttled, no user-name oracle) and log-out.
sign_in = APIRouter()


@sign_in.get("/login")
def login_form(request: Request, sess: Sess, settings: Conf) -> Response:
    if sess is not None and sess.user is not None:
        return RedirectResponse("/", status_code=303)  # logged in already
    s = sess if sess is not None else Session.anonymous(_now_s(), 3600)
    return with_cookie(pages.login_page(s.csrf).response(request), s, settings)


@sign_in.post("/login")
async def login(request: Request, svc: Svc, sess: Sess, data: Form) -> Response:
    if sess is not None and sess.user is not None:
        sess = Session.anonymous(_now_s(), 3600)  # a logged-in form is never a log-in form
    if not csrf_ok(sess, data.get("csrf")):
        return forbidden(request, None, "")
    assert sess is not None
    name, password = data.get("username", "")[:64], data.get("password", "")
    address = request.client.host if request.client else "unknown"
    try:
        attempt = await run_in_threadpool(svc.throttle.attempt, name, address, _now_s() * 1000)
    except ConsoleError as exc:
        return unavailable(request, str(exc))
    if not attempt.allowed:
        svc.metrics.logins.labels("throttled").inc()
        return throttled(request, sess, attempt.wait_s, svc.settings)
    user = svc.users.get(name)
    # An unknown name costs one hash check too: the time taken says nothing about who exists.
    checked = await run_in_threadpool(
        verify_password, password, user.password_hash if user else svc.dummy_hash
    )
    ok = user is not None and checked
    svc.metrics.logins.labels("ok" if ok else "refused").inc()
    if not ok or user is None:
        log.info("log-in refused for %r from %s", name[:32], address)
        if attempt.wait_s > 0:
            return throttled(request, sess, attempt.wait_s, svc.settings)
        page = pages.login_page(sess.csrf, "Unknown analyst or wrong password.")
        return with_cookie(page.response(request, 401), sess, svc.settings)
    try:
        await run_in_threadpool(svc.throttle.succeeded, name, address)
        session_id, fresh = await run_in_threadpool(svc.sessions.open, name, user, _now_s())
    except ConsoleError as exc:
        return unavailable(request, str(exc))
    log.info("%s %s logged in from %s", user.role, name, address)
    return with_cookie(RedirectResponse("/", status_code=303), fresh, svc.settings, session_id)


@sign_in.post("/logout")
async def logout(request: Request, svc: Svc, sess: Sess, data: Form) -> Response:
    if sess is None or not csrf_ok(sess, data.get("csrf")):
        return forbidden(request, sess.user if sess else None, sess.csrf if sess else "")
    session_id = server_session_id(request)
    if sess.user is not None and session_id is not None:
        try:
            await run_in_threadpool(svc.sessions.end, session_id, sess.user)
        except ConsoleError as exc:
            return unavailable(request, str(exc), sess)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


# Review: the queue, the model comparisons, a case and its verdict; logged-in analysts only.
review = APIRouter()


@review.get("/")
def queue(request: Request, svc: Svc, sess: Sess) -> Response:
    if sess is None or sess.user is None:
        return to_login()
    try:
        page = pages.queue_page(
            svc.cases.open_cases(),
            svc.cases.resolved_cases(),
            svc.cases.counts(),
            svc.settings.REVIEW_TIMEOUT_S,
            sess.user,
            sess.csrf,
        )
    except ConsoleError as exc:
        return unavailable(request, str(exc), sess)
    return page.response(request)


@review.get("/models")
def model_comparisons(request: Request, sess: Sess, settings: Conf) -> Response:
    if sess is None or sess.user is None:
        return to_login()
    found = comparisons.comparisons_context(settings.MODEL_DIR)
    return pages.comparisons_page(found, sess.user, sess.csrf).response(request)


@review.get("/cases/{event_id}")
def case(event_id: str, request: Request, svc: Svc, sess: Sess) -> Response:
    if sess is None or sess.user is None:
        return to_login()
    try:
        found = svc.cases.get(event_id)
        page = pages.case_page(found, svc.cases.on_hold(found.card_id), sess.user, sess.csrf)
    except CaseNotFound as exc:
        return no_such_case(request, exc, sess)
    except ConsoleError as exc:
        return unavailable(request, str(exc), sess)
    return page.response(request)


async def _needs_a_lead(request: Request, svc: Services, sess: Session, event_id: str) -> Response | None:
    """The refusal of an analyst's CONFIRM of a case above ``CONFIRM_LEAD_ABOVE_EUR`` (403), or the
    page of a case that cannot be read; None when this user may confirm it."""
    user = svc.users.get(sess.user or "")
    if user is not None and user.is_lead:
        return None
    try:
        found = await run_in_threadpool(svc.cases.get, event_id)
    except CaseNotFound as exc:
        return no_such_case(request, exc, sess)
    except ConsoleError as exc:
        return unavailable(request, str(exc), sess)
    limit = svc.settings.CONFIRM_LEAD_ABOVE_EUR
    if found.amount_eur <= limit:
        return None
    text = (
        f"Confirming a case above {limit:g} EUR needs a lead; this one is "
        f"{found.amount_eur:.2f} EUR. Nothing was recorded."
    )
    return pages.message_page("A lead must confirm", text, sess.user, sess.csrf).response(request, 403)


@review.post("/cases/{event_id}/verdict")
async def verdict(event_id: str, request: Request, svc: Svc, sess: Sess, data: Form) -> Response:
    if sess is None or sess.user is None:
        return to_login()
    if not csrf_ok(sess, data.get("csrf")):
        return forbidden(request, sess.user, sess.csrf)
    chosen = ANALYST_VERDICTS.get(data.get("verdict", ""))
    if chosen is None:
        text = f"field 'verdict'={data.get('verdict', '')[:20]!r}: must be CONFIRM or CLEAR"
        return pages.message_page("Invalid verdict", text, sess.user, sess.csrf).response(request, 422)
    if chosen is Verdict.CONFIRM:
        refused = await _needs_a_lead(request, svc, sess, event_id)
        if refused is not None:
            return refused
    try:
        resolved = await run_in_threadpool(svc.verdicts.resolve, event_id, chosen, analyst_actor(sess.user))
    except CaseConflict as exc:
        found = await run_in_threadpool(svc.cases.get, event_id)
        page = pages.case_page(found, False, sess.user, sess.csrf, error=f"Not recorded: {exc}.")
        return page.response(request, 409)
    except CaseNotFound as exc:
        return no_such_case(request, exc, sess)
    except EffectsPending as exc:
        text = f"The verdict is recorded; its effects are retried in the background: {exc}"
        return pages.message_page("Effects pending", text, sess.user, sess.csrf).response(request, 503)
    except ConsoleError as exc:
        return unavailable(request, f"The verdict was not recorded; try again: {exc}", sess)
    done = (
        "Fraud confirmed: card blocked, risk tier raised" if chosen.blocks else "Cleared: review hold lifted"
    )
    page = pages.case_page(resolved, False, sess.user, sess.csrf, message=f"{done}; label written.")
    return page.response(request)
