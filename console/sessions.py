"""Server-side sessions and log-in throttling, in Redis (shared by every console replica).

Sessions: the cookie holds only a random session id; ``console:session:<id>`` holds the user, the
CSRF token, the expiry and the fingerprint of the user's password hash and role
(:meth:`console.auth.User.fingerprint`). A session ends at once when it is deleted (log-out), when
its user is no longer configured, or when the user's fingerprint differs (a password or role
change): every request reads it back and checks both.

Throttling: failed log-ins are counted per user name and per client address
(``console:throttle:user:<sha256 of the name>``, ``console:throttle:addr:<address>``). After the
free failures, each failure sets a wait that doubles, up to a maximum; an attempt during a wait
is refused with its remaining time and never reaches the password check. The check and the count
are one Lua script, so concurrent attempts cannot slip past a wait: each attempt is counted as a
failure before the password is checked, and a success takes its count back.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.exceptions import RedisError

from console.auth import Session, User
from fraud_core.exceptions import StoreUnavailable

SESSION_PREFIX = "console:session:"
USER_SESSIONS_PREFIX = "console:user-sessions:"
THROTTLE_PREFIX = "console:throttle:"


def session_key(session_id: str) -> str:
    return f"{SESSION_PREFIX}{session_id}"


def user_sessions_key(user: str) -> str:
    return f"{USER_SESSIONS_PREFIX}{user}"


def throttle_keys(user: str, address: str) -> tuple[str, str]:
    """The user's and the address's throttle keys (the name hashed: any bytes, bounded length)."""
    named = hashlib.sha256(user.encode("utf-8", "replace")).hexdigest()[:32]
    return f"{THROTTLE_PREFIX}user:{named}", f"{THROTTLE_PREFIX}addr:{address[:64]}"


class SessionStore:
    """Logged-in sessions; ids are 256-bit random, so a cookie cannot be guessed or forged."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self.ttl_s = ttl_s

    def open(self, user: str, profile: User, now_s: int) -> tuple[str, Session]:
        """A new session for ``user`` (a fresh id and CSRF token); returns its id and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), now_s + self.ttl_s)
        body = {"u": user, "c": session.csrf, "e": session.expires_at_s, "f": profile.fingerprint()}
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(session_key(session_id), json.dumps(body), ex=self.ttl_s)
                pipe.sadd(user_sessions_key(user), session_id)
                pipe.expire(user_sessions_key(user), self.ttl_s)
                pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"cannot open a session: {exc}") from exc
        return session_id, session

    def read(self, session_id: str, users: dict[str, User], now_s: int) -> Session | None:
        """The live session of ``session_id``, or None (unknown, expired, or its user removed or
        changed: then it is ended here)."""
        try:
            raw = cast("bytes | None", self._redis.get(session_key(session_id)))
        except RedisError as exc:
            raise StoreUnavailable(f"cannot read the session: {exc}") from exc
        if raw is None:
            return None
        try:
            body: dict[str, Any] = json.loads(raw)
            user, session = str(body["u"]), Session(str(body["u"]), str(body["c"]), int(body["e"]))
            fingerprint = str(body["f"])
        except (ValueError, KeyError, TypeError):
            self.end(session_id, None)
            return None
        profile = users.get(user)
        if profile is None or profile.fingerprint() != fingerprint or session.expires_at_s <= now_s:
            self.end(session_id, user)
            return None
        return session

    def end(self, session_id: str, user: str | None) -> None:
        """End one session (log-out)."""
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(session_key(session_id))
                if user is not None:
                    pipe.srem(user_sessions_key(user), session_id)
                pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"cannot end the session: {exc}") from exc

    def end_all(self, user: str) -> int:
        """End every session of ``user`` (a removed user, a changed password); returns how many."""
        try:
            ids = [i.decode() for i in cast("set[bytes]", self._redis.smembers(user_sessions_key(user)))]
            with self._redis.pipeline(transaction=True) as pipe:
                for session_id in ids:
                    pipe.delete(session_key(session_id))
                pipe.delete(user_sessions_key(user))
                pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"cannot end the sessions of {user}: {exc}") from exc
        return len(ids)


# KEYS: user key, address key. ARGV: now (ms), user free failures, address free failures, base
# wait (ms), max wait (ms), window (s). Returns {wait_ms, reserved}: wait_ms > 0 and reserved 0 =
# refused, wait that long; reserved 1 = go on and check the password (counted as a failure).
_CHECK = """
local now = tonumber(ARGV[1])
local wait = 0
for i = 1, 2 do
  local until_ms = tonumber(redis.call('HGET', KEYS[i], 'until') or '0')
  if until_ms > now and until_ms - now > wait then wait = until_ms - now end
end
if wait > 0 then return {wait, 0} end
local next_wait = 0
for i = 1, 2 do
  local failures = redis.call('HINCRBY', KEYS[i], 'failures', 1)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[6]))
  local over = failures - tonumber(ARGV[1 + i])
  if over > 0 then
    local ms = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ math.min(over - 1, 30))
    redis.call('HSET', KEYS[i], 'until', now + ms)
    if ms > next_wait then next_wait = ms end
  end
end
return {next_wait, 1}
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One log-in attempt's standing: ``allowed`` to check the password, and the wait (s) that a
    failure of it sets (0: none); or refused, with the remaining wait."""

    allowed: bool
    wait_s: float


class LoginThrottle:
    """Per-user and per-address limits on failed log-ins (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        user_free: int,
        address_free: int,
        base_wait_s: float,
        max_wait_s: float,
        window_s: int,
    ) -> None:
        self._redis = client
        self._check = client.register_script(_CHECK)
        self._args = (user_free, address_free, int(base_wait_s * 1000), int(max_wait_s * 1000), window_s)

    def attempt(self, user: str, address: str, now_ms: int) -> Attempt:
        """Whether an attempt may check its password now; counts it as a failure in advance."""
        try:
            wait_ms, reserved = cast(
                "list[int]", self._check(throttle_keys(user, address), [now_ms, *self._args])
            )
        except RedisError as exc:
            raise StoreUnavailable(f"cannot check the log-in limits: {exc}") from exc
        return Attempt(bool(reserved), wait_ms / 1000)

    def succeeded(self, user: str, address: str) -> None:
        """The password was right: the user's failures are forgotten, the address's advance count
        taken back (its waits stay: one valid account must not reset an address's guesses)."""
        user_key, address_key = throttle_keys(user, address)
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(user_key)
                pipe.hincrby(address_key, "failures", -1)
                pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"cannot reset the log-in limits: {exc}") from exc
