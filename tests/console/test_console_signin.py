"""Console sign-in against the real stack (issue 24 §2): throttling, no user-name oracle, body
size, server-side sessions that end at once, and roles. The app runs in-process (TestClient) on
the session's real Redis, Kafka and registry; each test signs in from a client address of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

import console.app
import schemas
from console.auth import Session, hash_password, sign_session
from console.sessions import LoginThrottle
from console.settings import ConsoleSettings
from fraud_core.review_cases import CaseStore
from tests.console.test_console_pages import BREAKOUT, SCRIPT, Parsed
from tests.console.test_review_queue import open_case, review

pytestmark = pytest.mark.integration

ITER = 100_000
PASSWORD, LEAD_PASSWORD = "correct horse battery staple", "lead's own passphrase"


def users_entry(**users: tuple[str, str]) -> str:
    return ",".join(
        f"{name}:{hash_password(pw, iterations=ITER)}:{role}" for name, (pw, role) in users.items()
    )


@pytest.fixture
def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"alice{suffix}", f"lena{suffix}"


@pytest.fixture
def base_settings(stack: Any, make_topic: Callable[..., str], names: tuple[str, str]) -> ConsoleSettings:
    analyst, lead = names
    return ConsoleSettings(
        APP_ENV="test",
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        SCHEMA_REGISTRY_URL=stack.registry_url,
        REDIS_URL=stack.redis_url,
        LABELS_TOPIC=make_topic("labels", schema=schemas.LABEL),
        ACTIONS_TOPIC=make_topic("actions", schema=schemas.ACTION),
        CONSOLE_USERS=users_entry(**{analyst: (PASSWORD, "analyst"), lead: (LEAD_PASSWORD, "lead")}),
        CONSOLE_SECRET_KEY="k" * 40,
        BLOCK_TTL_S=3600,
        IDEMPOTENCY_TTL_S=3600,
        REVIEW_TIMEOUT_S=3600,
        SWEEP_INTERVAL_S=3600,
        CONFIRM_LEAD_ABOVE_EUR=100.0,
    )


@contextmanager
def running(settings: ConsoleSettings, address: str | None = None) -> Iterator[TestClient]:
    """The console app with its lifespan, as seen from a client address of this test's own."""
    client = (address or f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7", 50000)
    with TestClient(console.app.create_app(settings), client=client, follow_redirects=False) as http:
        yield http


def csrf(http: TestClient) -> str:
    html = http.get("/login").text
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def use_cookie(http: TestClient, value: str | None) -> None:
    """Present ``value`` as the session cookie (and no other)."""
    http.cookies.clear()
    if value is not None:
        http.cookies.set(console.app.COOKIE, value)


def log_in(http: TestClient, user: str, password: str) -> Any:
    return http.post("/login", data={"username": user, "password": password, "csrf": csrf(http)})


def test_a_thousand_wrong_passwords_are_throttled_and_none_signs_in(
    base_settings: ConsoleSettings, names: tuple[str, str]
) -> None:
    analyst, _ = names
    statuses: dict[int, int] = {}
    with running(base_settings) as http:
        token = csrf(http)
        for i in range(1000):
            resp = http.post("/login", data={"username": analyst, "password": f"guess-{i}", "csrf": token})
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            if resp.status_code == 429:
                assert int(resp.headers["Retry-After"]) >= 1
            assert console.app.COOKIE not in resp.cookies or not resp.cookies[console.app.COOKIE].startswith(
                "sid."
            )
        assert statuses.get(429, 0) >= 990, statuses
        assert set(statuses) <= {401, 429}, statuses
        # The right password is refused too while the wait lasts, from this address or another.
        assert log_in(http, analyst, PASSWORD).status_code == 429
    with running(base_settings) as other:
        assert log_in(other, analyst, PASSWORD).status_code == 429
        assert other.get("/").status_code == 303


def test_waits_grow_with_each_failure_per_user_and_per_address(stack: Any) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    throttle = LoginThrottle(client, user_free=3, address_free=5, base_wait_s=2, max_wait_s=20, window_s=60)
    user, address, now = f"u{uuid.uuid4().hex}", f"a{uuid.uuid4().hex}", 1_000_000
    try:
        assert [throttle.attempt(user, address, now).wait_s for _ in range(3)] == [0, 0, 0]  # free
        waits = []
        for _ in range(6):
            first = throttle.attempt(user, address, now)
            assert first.allowed
            waits.append(first.wait_s)
            during = throttle.attempt(user, address, now + 500)
            assert not during.allowed and during.wait_s == pytest.approx(first.wait_s - 0.5)
            now += int(first.wait_s * 1000)
        assert waits == [2, 4, 8, 16, 20, 20]
        # Another user from a fresh address starts free; a success forgets the user's failures.
        fresh = throttle.attempt(f"v{uuid.uuid4().hex}", f"b{uuid.uuid4().hex}", now)
        assert fresh.allowed and fresh.wait_s == 0
        throttle.succeeded(user, address)
        # The address is limited on its own: many names from one address wait too.
        spray = [throttle.attempt(f"n{i}-{uuid.uuid4().hex}", address, now) for i in range(3)]
        assert spray[-1].wait_s > 0 and not throttle.attempt(f"x{uuid.uuid4().hex}", address, now + 1).allowed
    finally:
        client.close()


def test_an_unknown_user_costs_the_same_hash_check_as_a_known_one(
    base_settings: ConsoleSettings, names: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    analyst, _ = names
    checked: list[str] = []
    real = console.app.verify_password

    def counting(password: str, encoded: str) -> bool:
        checked.append(encoded.split("$")[1])  # the iterations: the work done
        return real(password, encoded)

    monkeypatch.setattr(console.app, "verify_password", counting)
    with running(base_settings) as http:
        known = log_in(http, analyst, "wrong")
        unknown = log_in(http, f"nobody{uuid.uuid4().hex[:6]}", "wrong")
    assert known.status_code == unknown.status_code == 401
    assert known.text.count("Unknown analyst or wrong password") == 1
    assert unknown.text.count("Unknown analyst or wrong password") == 1
    assert checked == [str(ITER), str(ITER)]


def test_a_body_over_the_limit_is_refused_with_413(base_settings: ConsoleSettings) -> None:
    with running(base_settings) as http:
        token = csrf(http)
        big = {"username": "x", "password": "p" * 20_000, "csrf": token}
        assert http.post("/login", data=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
            for _ in range(100):
                yield b"a" * 1000

        resp = http.post(
            "/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert resp.status_code == 413


def test_sessions_end_at_log_out_password_change_and_removal(
    base_settings: ConsoleSettings, names: tuple[str, str]
) -> None:
    analyst, lead = names
    with running(base_settings) as http:
        assert log_in(http, analyst, PASSWORD).status_code == 303
        cookie = http.cookies[console.app.COOKIE]
        assert cookie.startswith("sid.")
        assert http.get("/").status_code == 200
        assert http.get("/login").headers["location"] == "/"  # logged in: the form is not shown again
        page = http.get("/").text
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert http.post("/logout", data={"csrf": token}).status_code == 303
    with running(base_settings) as replay:  # the old cookie, replayed after log-out
        use_cookie(replay, cookie)
        assert replay.get("/").status_code == 303

        use_cookie(replay, None)
        assert log_in(replay, analyst, PASSWORD).status_code == 303
        live = replay.cookies[console.app.COOKIE]
        assert replay.get("/").status_code == 200
        use_cookie(replay, None)
        assert log_in(replay, lead, LEAD_PASSWORD).status_code == 303
        lead_cookie = replay.cookies[console.app.COOKIE]

    entries = dict(e.split(":", 1) for e in base_settings.CONSOLE_USERS.split(","))
    entries[analyst] = f"{hash_password('a new password', iterations=ITER)}:analyst"  # lead's unchanged
    changed = base_settings.model_copy(
        update={"CONSOLE_USERS": ",".join(f"{n}:{e}" for n, e in entries.items())}
    )
    with running(changed) as http:
        use_cookie(http, live)
        assert http.get("/").status_code == 303  # the password changed: the session is over
        use_cookie(http, lead_cookie)
        assert http.get("/").status_code == 200  # others' sessions stay
    del entries[lead]
    removed = base_settings.model_copy(
        update={"CONSOLE_USERS": ",".join(f"{n}:{e}" for n, e in entries.items())}
    )
    with running(removed) as http:
        use_cookie(http, lead_cookie)
        assert http.get("/").status_code == 303  # the user is gone: so is the session
    with running(base_settings) as http:
        use_cookie(http, lead_cookie)
        assert http.get("/").status_code == 303  # and it stays ended when the user comes back
        # A signed cookie naming a user (the old stateless form, or a forged one) signs no one in.
        forged = Session(lead, "c" * 43, 2_000_000_000)
        use_cookie(http, sign_session(forged, base_settings.secret_key))
        assert http.get("/").status_code == 303


def test_confirming_a_case_above_the_amount_needs_a_lead_and_the_actor_is_recorded(
    stack: Any, base_settings: ConsoleSettings, names: tuple[str, str]
) -> None:
    analyst, lead = names
    big, small = review(amount_minor=500_000), review(amount_minor=2_000)  # 5000 EUR and 20 EUR
    open_case(stack, big)
    open_case(stack, small)
    cases = CaseStore.from_url(stack.redis_url)
    try:
        with running(base_settings) as http:
            assert log_in(http, analyst, PASSWORD).status_code == 303
            token = (
                http.get(f"/cases/{big['event_id']}").text.split('name="csrf" value="', 1)[1].split('"')[0]
            )
            refused = http.post(
                f"/cases/{big['event_id']}/verdict", data={"verdict": "CONFIRM", "csrf": token}
            )
            assert refused.status_code == 403 and "needs a lead" in refused.text
            assert cases.get(big["event_id"]).is_open
            ok = http.post(f"/cases/{small['event_id']}/verdict", data={"verdict": "CONFIRM", "csrf": token})
            assert ok.status_code == 200
            assert cases.get(small["event_id"]).actor == f"analyst:{analyst}"
        with running(base_settings) as http:
            assert log_in(http, lead, LEAD_PASSWORD).status_code == 303
            token = (
                http.get(f"/cases/{big['event_id']}").text.split('name="csrf" value="', 1)[1].split('"')[0]
            )
            ok = http.post(f"/cases/{big['event_id']}/verdict", data={"verdict": "CONFIRM", "csrf": token})
            assert ok.status_code == 200
        resolved = cases.get(big["event_id"])
        assert not resolved.is_open and resolved.verdict == "CONFIRM" and resolved.actor == f"analyst:{lead}"
    finally:
        cases.close()


def test_a_hostile_case_is_shown_escaped_through_the_running_console(
    stack: Any, base_settings: ConsoleSettings, names: tuple[str, str]
) -> None:
    analyst, _ = names
    hostile = review(
        merchant_id=f"m{SCRIPT}", country="DE", reasons=[SCRIPT, BREAKOUT], rules_fired=[f"r{BREAKOUT}"]
    )
    open_case(stack, hostile)
    with running(base_settings) as http:
        assert log_in(http, analyst, PASSWORD).status_code == 303
        for path in ("/", f"/cases/{hostile['event_id']}"):
            page = http.get(path)
            assert page.status_code == 200
            assert SCRIPT not in page.text and "<img" not in page.text
            parsed = Parsed(page.text)
            assert not any(tag == "img" for tag, _ in parsed.tags)
            assert f"m{SCRIPT}" in "".join(parsed.text)
        assert BREAKOUT in "".join(Parsed(http.get(f"/cases/{hostile['event_id']}").text).text)
