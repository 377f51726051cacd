"""Wall-clock time where a record needs a processing timestamp (``decided_at``, ``failed_at``).

Event time always comes from the event; this clock only stamps when our code did something.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the epoch, UTC, from the wall clock."""
    return time.time_ns() // 1_000_000


DAY_S = 24 * 3600  # seconds: the unit of the TTLs (blocklist, review hold, case retention)
