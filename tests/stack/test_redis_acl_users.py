"""The Redis ACL users of deploy/redis_users.py against a real Redis: each application's own code
works as its user, and what it has no business doing is refused. The users are created in the
session's Redis with ACL SETUSER (the same rules compose and Kubernetes pass to ``--user``)."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from actions.exceptions import NotifyError
from actions.metrics import Metrics
from actions.outbox import DUE_KEY, NotificationDispatcher, NotificationOutbox
from console.auth import User, hash_password
from console.sessions import LoginThrottle, SessionStore
from deploy.local.stack import _redis_server, free_port
from deploy.redis_users import USERS, password_variable, start_script
from fraud_core.action_logic import audit_records, parse_decision
from fraud_core.action_store import ActionStore
from fraud_core.connections import redis_url
from fraud_core.enrichment import ProfileStore, blocklist_key, profile_key
from fraud_core.features import Profile
from producers.profiles import seed_profiles
from tests.actions.action_helpers import T0, decision

pytestmark = pytest.mark.integration


@pytest.fixture
def users(stack: Any) -> Iterator[dict[str, str]]:
    """user -> a ``redis://user:password@...`` URL; users get a unique suffix and are deleted after."""
    admin = redis.Redis.from_url(stack.redis_url)
    suffix = uuid.uuid4().hex[:8]
    urls = {}
    for user, rules in USERS.items():
        name, password = f"{user}-{suffix}", secrets.token_urlsafe(24)
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules.split())
        urls[user] = redis_url(stack.redis_url, name, SecretStr(password))
    yield urls
    admin.execute_command("ACL", "DELUSER", *[f"{u}-{suffix}" for u in USERS])
    admin.close()


def test_the_job_reads_profiles_and_the_blocklist_and_writes_nothing(
    stack: Any, users: dict[str, str]
) -> None:
    admin = redis.Redis.from_url(stack.redis_url)
    user_id, card = f"u-{uuid.uuid4().hex[:8]}", f"card_{uuid.uuid4().hex[:8]}"
    admin.set(profile_key(user_id), '{"txn_count": 3}')
    admin.set(blocklist_key(card), "1")
    store = ProfileStore(users["fraud-job"], timeout_s=2)
    try:
        got = store.fetch([user_id], [card])
    finally:
        store.close()
    assert not got.degraded and got.blocklisted == [True] and got.profiles[0] is not None
    job = redis.Redis.from_url(users["fraud-job"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        job.set(blocklist_key(card), "0")
    with pytest.raises(redis.exceptions.NoPermissionError):
        job.flushdb()
    with pytest.raises(redis.exceptions.NoPermissionError):
        job.get("some:other:key")
    job.close()
    admin.close()


def test_the_consumers_apply_a_decision_and_cannot_touch_other_keys(users: dict[str, str]) -> None:
    flagged = decision("FLAGGED")
    store = ActionStore(users["fraud-consumers"], 60, 60)
    try:
        applied = store.apply(
            parse_decision(flagged),
            lambda before, after: audit_records(parse_decision(flagged), before, after, T0, 60, "test"),
        )
        store.mark_done([flagged["event_id"]])
        assert store.block_entry(flagged["card_id"]) is not None
    finally:
        store.close()
    assert applied.outcome.name == "NEW" and applied.audits
    consumers = redis.Redis.from_url(users["fraud-consumers"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        consumers.keys("*")
    with pytest.raises(redis.exceptions.NoPermissionError):
        consumers.set("other:key", "x")
    consumers.close()


def test_the_producer_seeds_profiles_only(users: dict[str, str]) -> None:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    assert seed_profiles(users["fraud-producer"], {user_id: Profile()}) == 1
    producer = redis.Redis.from_url(users["fraud-producer"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        producer.set(blocklist_key("card_x"), "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        producer.get(profile_key(user_id))
    producer.close()


def test_the_consumers_queue_retry_and_deliver_notifications_as_their_user(
    stack: Any, users: dict[str, str]
) -> None:
    flagged = decision("FLAGGED")
    now = [T0]
    sent: list[dict[str, Any]] = []

    class FlakyNotifier:
        channel = "test"
        failures = 1

        def notify(self, payload: dict[str, Any], headers: dict[str, str]) -> None:
            if self.failures:
                self.failures -= 1
                raise NotifyError("receiver down (test)")
            sent.append(payload)

    client = redis.Redis.from_url(users["fraud-consumers"])
    outbox = NotificationOutbox(client, 60, lambda: now[0])
    dispatcher = NotificationDispatcher(
        client,
        FlakyNotifier(),
        None,  # type: ignore[arg-type]  # no dead letter in this test
        None,  # type: ignore[arg-type]
        "unused",
        Metrics(),
        max_attempts=5,
        base_delay_s=1.0,
        max_delay_s=10.0,
        lease_s=30.0,
        clock_ms=lambda: now[0],
    )
    try:
        outbox.enqueue(flagged["event_id"], {"event_id": flagged["event_id"]}, {}, ("t", 0, 1), b"k", b"v")
        assert dispatcher.dispatch_due() == 1 and not sent  # failed: due again in 1 s
        assert dispatcher.dispatch_due() == 0
        now[0] += 1000
        assert dispatcher.dispatch_due() == 1 and sent == [{"event_id": flagged["event_id"]}]
    finally:
        client.close()
    admin = redis.Redis.from_url(stack.redis_url)
    assert admin.zscore(DUE_KEY, flagged["event_id"]) is None
    admin.close()


def test_the_console_keeps_sessions_and_log_in_limits_as_its_user(stack: Any, users: dict[str, str]) -> None:
    client = redis.Redis.from_url(users["fraud-console"])
    user = User(hash_password("pw", iterations=100_000))
    name = f"u{uuid.uuid4().hex[:8]}"
    try:
        sessions = SessionStore(client, 60)
        session_id, session = sessions.open(name, user, 1000)
        assert sessions.read(session_id, {name: user}, 1001) == session
        sessions.end(session_id, name)
        assert sessions.read(session_id, {name: user}, 1001) is None
        throttle = LoginThrottle(
            client, user_free=1, address_free=5, base_wait_s=1, max_wait_s=5, window_s=60
        )
        assert throttle.attempt(name, "10.0.0.1", 1000).wait_s == 0
        assert throttle.attempt(name, "10.0.0.1", 1000).wait_s == 1
        throttle.succeeded(name, "10.0.0.1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.keys("*")  # no code needs it: the console lost +keys
    finally:
        client.close()


def test_the_start_script_keeps_every_password_off_the_command_line(tmp_path: Path) -> None:
    """The compose/Kubernetes start script against a real redis-server: each user logs in with its
    password, the default user may only PING, and no password is in the server's command line or
    environment."""
    passwords = {u: secrets.token_urlsafe(16) + '"$x' for u in USERS}  # shell-hostile characters too
    script = tmp_path / "start.sh"
    script.write_text(start_script(list(USERS)))
    port = free_port()
    env = {
        "PATH": f"{Path(_redis_server()).parent}:{os.environ['PATH']}",
        "REDIS_DATA_DIR": str(tmp_path),
        "REDIS_PORT": str(port),
        "REDIS_EXEC": "env",
        **{password_variable(u): p for u, p in passwords.items()},
    }
    server = subprocess.Popen(["sh", str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(port=port).ping():
                    break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "redis did not start"
                time.sleep(0.1)
        for user, password in passwords.items():
            assert redis.Redis(port=port, username=user, password=password).ping()
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(port=port, username=user, password="wrong").ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis(port=port).get("profile:x")
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        assert b"redis-server" in cmdline
        for password in passwords.values():
            assert password.encode() not in cmdline and password.encode() not in environ
        acl = (tmp_path / "users.acl").read_text()
        for user, password in passwords.items():  # stored as SHA-256 only
            assert f"user {user} on #{hashlib.sha256(password.encode()).hexdigest()} " in acl
            assert password not in acl
        assert (tmp_path / "users.acl").stat().st_mode & 0o077 == 0
    finally:
        server.terminate()
        server.wait(10)


def test_the_start_script_refuses_a_missing_password(tmp_path: Path) -> None:
    script = tmp_path / "start.sh"
    script.write_text(start_script(list(USERS)))
    env = {"PATH": os.environ["PATH"], "REDIS_DATA_DIR": str(tmp_path), "REDIS_EXEC": "true"}
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "REDIS_FRAUD_JOB_PASSWORD is not set" in done.stderr
    assert not (tmp_path / "users.acl").exists()
