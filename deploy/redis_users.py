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

USERS: dict[str, str] = {
    # The stream job: reads profiles and blocklist flags (one pipelined MGET of each per batch).
    "fraud-job": f"~profile:* ~blocklist:card:* resetchannels -@all {_CONNECT} +get +mget",
    # The action consumers: profile updates, blocklist entries and idempotency markers, in one
    # WATCH/MULTI/EXEC per decision.
    "fraud-consumers": (
        f"~profile:* ~blocklist:card:* ~actions:done:* resetchannels -@all {_CONNECT} "
        "+get +mget +set +watch +unwatch +multi +exec +discard"
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
