"""Analyst log-in as pure functions: password hashes, the users list, signed sessions, CSRF tokens.

PBKDF2-HMAC-SHA256 hashes (the standard library's) in the form
``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>`` (``python -m console hash-password``
prints one). The session cookie is signed with itsdangerous (the signer Starlette's own session
middleware uses) under the console's secret key, with a salt per kind of cookie so one kind can
never be replayed as the other:

* before log-in, the cookie carries the log-in form's CSRF token and an expiry
  (:func:`sign_session`);
* after log-in, it carries only the random id of the server-side session
  (:func:`sign_session_id`); the session itself (user, CSRF token, expiry) lives in Redis
  (:mod:`console.sessions`), so log-out or a changed user ends it at once.

Each user has a role: ``analyst`` or ``lead`` (``name:hash`` or ``name:hash:role``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256
USER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
ANALYST, LEAD = "analyst", "lead"
ROLES = (ANALYST, LEAD)
# itsdangerous salts: a cookie signed for one purpose does not verify for the other.
ANONYMOUS_SALT = "console.session.anonymous"
SESSION_ID_SALT = "console.session.id"


@dataclass(frozen=True, slots=True)
class User:
    """A console user: the stored password hash and the role."""

    password_hash: str
    role: str = ANALYST

    @property
    def is_lead(self) -> bool:
        return self.role == LEAD

    def fingerprint(self) -> str:
        """Changes whenever the password (or role) changes: a session records the fingerprint it
        was opened under, and a different one ends it."""
        return hashlib.sha256(f"{self.role}${self.password_hash}".encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The stored form of ``password``: algorithm, iterations, salt and hash."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def check_hash_format(encoded: str) -> None:
    """Raise ValueError (saying what is wrong, never echoing the hash) unless ``encoded`` is a hash
    :func:`hash_password` could have written."""
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise ValueError(f"not a {ALGORITHM}$<iterations>$<salt>$<hash> password hash")
    if not parts[1].isdigit() or int(parts[1]) < 100_000:
        raise ValueError("password hash iterations must be a number of at least 100000")
    try:
        _unb64(parts[2]), _unb64(parts[3])
    except (binascii.Error, ValueError) as exc:
        raise ValueError("password hash salt or digest is not base64") from exc


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the stored hash (constant-time comparison)."""
    try:
        check_hash_format(encoded)
    except ValueError:
        return False
    _, iterations, salt, digest = encoded.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(iterations))
    return hmac.compare_digest(candidate, _unb64(digest))


def parse_users(text: str) -> dict[str, User]:
    """Users from ``name:hash`` or ``name:hash:role`` entries separated by commas or new lines
    (blank lines and lines starting with ``#`` are skipped); the role defaults to ``analyst``.

    Raises:
        ValueError: naming the entry (by its position and user name, never the hash) that is wrong.
    """
    users: dict[str, User] = {}
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    for n, entry in enumerate(entries, start=1):
        if not entry or entry.startswith("#"):
            continue
        name, sep, rest = entry.partition(":")
        encoded, _, role = rest.partition(":")
        if not sep or not USER_NAME.match(name):
            raise ValueError(
                f"user entry {n}: expected <name>:<hash>[:<role>] with a name of 1-32 letters, digits, _ . -"
            )
        role = role or ANALYST
        if role not in ROLES:
            raise ValueError(f"user entry {n} ({name}): role {role[:20]!r} must be one of {', '.join(ROLES)}")
        try:
            check_hash_format(encoded)
        except ValueError as exc:
            raise ValueError(f"user entry {n} ({name}): {exc}") from exc
        if name in users:
            raise ValueError(f"user entry {n}: {name} is listed twice")
        users[name] = User(encoded, role)
    return users


@dataclass(frozen=True, slots=True)
class Session:
    """A session: the analyst (None before log-in), the CSRF token every form posts back, the expiry."""

    user: str | None
    csrf: str
    expires_at_s: int

    @classmethod
    def anonymous(cls, now_s: int, ttl_s: int) -> Session:
        return cls(None, secrets.token_urlsafe(32), now_s + ttl_s)

    def logged_in(self, user: str, now_s: int, ttl_s: int) -> Session:
        """A fresh session for ``user``: a new CSRF token, so one seen before log-in is worthless."""
        return Session(user, secrets.token_urlsafe(32), now_s + ttl_s)


def sign_session(session: Session, key: bytes) -> str:
    """The signed cookie value of a session that lives in the cookie (the state before log-in)."""
    payload = {"u": session.user, "c": session.csrf, "e": session.expires_at_s}
    return URLSafeSerializer(key, salt=ANONYMOUS_SALT).dumps(payload)


def read_session(cookie: str | None, key: bytes, now_s: int) -> Session | None:
    """The session of a cookie, or None when it is missing, forged, malformed or expired."""
    if not cookie:
        return None
    try:
        data: Any = URLSafeSerializer(key, salt=ANONYMOUS_SALT).loads(cookie)
        session = Session(data["u"], str(data["c"]), int(data["e"]))
    except (BadData, KeyError, TypeError, ValueError):
        return None
    return session if session.expires_at_s > now_s else None


def sign_session_id(session_id: str, key: bytes) -> str:
    """The signed cookie value naming a server-side session."""
    return URLSafeSerializer(key, salt=SESSION_ID_SALT).dumps(session_id)


def read_session_id(cookie: str, key: bytes) -> str | None:
    """The server-side session id a cookie names, or None when the signature or payload is wrong
    (then Redis is not asked at all)."""
    try:
        session_id: Any = URLSafeSerializer(key, salt=SESSION_ID_SALT).loads(cookie)
    except BadData:
        return None
    return session_id if isinstance(session_id, str) and session_id else None


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """Whether a posted form's CSRF token is the session's (constant-time)."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())
