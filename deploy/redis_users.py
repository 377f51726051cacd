"""The Redis ACL users of the pipeline, one per application, with the keys and commands it needs.

Written once here; ``docker-compose.yml`` and ``deploy/k8s/base/redis.yaml`` pass the same rules to
``redis-server --user`` (tests/deploy checks they agree, and tests/stack runs each application's
Redis code as its user against a real Redis). Passwords are never here: compose interpolates them
from ``.env``, Kubernetes expands them from the ``redis-passwords`` Secret.

The ``default`` user (no password) may only ``PING``: health checks work, nothing else does.
"""

from __future__ import annotations

# Commands every client sends on connecting (redis-py: AUTH is always allowed; CLIENT SETINFO, SELECT).
_CONNECT = "+ping +hello +client|setinfo +select"

# The review queue's keys and the commands that open a case (fraud_core/review_cases.py).
_CASE_KEYS = "~case:* ~cases:* ~review:hold:card:* ~recent:user:*"
_CASE_COMMANDS = "+hset +hget +zadd +sadd +expire +lpush +ltrim +lrange"

USERS: dict[str, str] = {
    # The stream job: reads profiles and blocklist flags (one pipelined MGET of each per batch).
    "fraud-job": f"~profile:* ~blocklist:card:* resetchannels -@all {_CONNECT} +get +mget",
    # The action consumers: profile updates, blocklist entries and idempotency markers, in one
    # WATCH/MULTI/EXEC per decision; a REVIEW also opens its case, holds the card and adds to the
    # user's recent decisions (fraud_core/review_cases.py). Notifications wait in an outbox (actions/outbox.py).
    "fraud-consumers": (
        f"~profile:* ~blocklist:card:* ~actions:done:* ~actions:notify:* {_CASE_KEYS} resetchannels -@all "
        f"{_CONNECT} +get +mget +set +watch +unwatch +multi +exec +discard {_CASE_COMMANDS} "
        "+zrangebyscore +zrem +del"
    ),
    # The analyst console: reads and resolves cases (a Lua script makes a resolution atomic) and
    # carries verdicts out through the consumers' action store; its sessions and log-in limits
    # live under console:* (console/sessions.py, the limits through a Lua script).
    "fraud-console": (
        f"~profile:* ~blocklist:card:* ~actions:done:* {_CASE_KEYS} ~console:* resetchannels -@all {_CONNECT} "
        f"+get +mget +set +exists +watch +unwatch +multi +exec +discard {_CASE_COMMANDS} "
        "+hgetall +smembers +scard +zcard +zrevrange +zrangebyscore +zrem +srem +eval +evalsha +script|load "
        "+del +hincrby"
    ),
    # The producer seeds the simulator's profiles (compose's --seed-profiles).
    "fraud-producer": f"~profile:* resetchannels -@all {_CONNECT} +set",
}
DEFAULT_USER = "default on nopass resetchannels -@all +ping"


def password_variable(user: str) -> str:
    """The environment variable holding ``user``'s password where Redis starts (REDIS_FRAUD_JOB_PASSWORD)."""
    return "REDIS_" + user.upper().replace("-", "_") + "_PASSWORD"


def user_directive(user: str, password_ref: str) -> str:
    """The ``--user`` argument of ``redis-server`` for ``user``; ``password_ref`` is how the
    deployment spells its password variable (``${X}`` in compose, ``$(X)`` in Kubernetes)."""
    return f"{user} on >{password_ref} {USERS[user]}"


def _acl_line(user: str) -> str:
    return f'echo "user {user} on #$(sha "${password_variable(user)}") {USERS[user]}"'


def start_script(users: list[str]) -> str:
    """The ``sh -c`` script the Redis container starts with: it writes an ACL file holding each
    user's rules and the SHA-256 of its password (read from ``REDIS_<USER>_PASSWORD``), unsets the
    password variables and starts ``redis-server --aclfile``. No password ever appears on a command
    line (``ps``, ``/proc/<pid>/cmdline``), unlike ``--user name on >password``.

    ``REDIS_DATA_DIR`` (default ``/data``), ``REDIS_PORT`` (6379) and ``REDIS_EXEC`` (the image's
    ``docker-entrypoint.sh``, which drops root to the redis user) let a test run it outside a container.
    """
    variables = [password_variable(u) for u in users]
    lines = [
        "set -eu",
        "umask 077",
        'dir="${REDIS_DATA_DIR:-/data}"',
        'acl="$dir/users.acl"',
        "sha() { printf %s \"$1\" | sha256sum | cut -d' ' -f1; }",
        *(f'[ -n "${{{v}:-}}" ] || {{ echo "{v} is not set" >&2; exit 1; }}' for v in variables),
        "{",
        f"echo 'user {DEFAULT_USER}'",
        *(_acl_line(u) for u in users),
        '} > "$acl"',
        f"unset {' '.join(variables)}",
        'exec ${REDIS_EXEC:-docker-entrypoint.sh} redis-server --appendonly yes --dir "$dir" '
        '--port "${REDIS_PORT:-6379}" --aclfile "$acl"',
    ]
    return "\n".join(lines) + "\n"
