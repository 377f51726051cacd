"""When a window-based feature may be judged for drift. Pure functions, no I/O.

After a fresh start every windowed feature is low: a count over the last hour is small while the
stream has run for only a minute, so its distribution differs from the training reference and its
PSI crosses the alert threshold on ordinary traffic. A feature is therefore judged only once the
stream has run for longer than the feature's window (``Feature.window`` in
:mod:`fraud_core.feature_catalog`), plus, for the label-driven features, the label delay: their
rates only count labels that have arrived, and the first arrive that long after the first payment.

**The clock is event time**: a feature is judged over a drift window only when the window's oldest
decision came more than the warm-up after the first decision the monitor saw, by ``event_time``
(so no value in the window was computed over a half-filled feature window), not by the wall clock
since the monitor started, because the job fills its windows in
event time: a replay or backlog at 100x real time warms a 1 h window in 36 s of wall time, a
stalled stream warms nothing however long it stalls, and the same input gives the same judgement
on every run. The origin is the first decision the monitor read, which is the stream's start when
the monitor starts with the pipeline (``make demo``, a fresh consumer group reading from the
earliest offset). A monitor restarted on a long-running stream judges conservatively: its windowed
features warm up again (no false alarm; drift on them shows one window later).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from fraud_core.feature_catalog import BY_NAME

_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_WINDOW = re.compile(r"([1-9][0-9]*)([smhd])")


def window_ms(window: str) -> int:
    """``"10m"`` -> 600000. Raises ValueError naming the value for anything else."""
    match = _WINDOW.fullmatch(window)
    if match is None:
        raise ValueError(f"feature window {window!r}: expected a count and a unit s, m, h or d (e.g. '10m')")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def warm_up_ms(name: str, label_delay_ms: int) -> int:
    """Event time the stream must have run before feature ``name`` is comparable with its reference:
    its window (0 without one, or for a name that is no catalogue feature, such as the score), plus
    ``label_delay_ms`` for the label-driven features."""
    feature = BY_NAME.get(name)
    if feature is None or feature.window is None:
        return 0
    return window_ms(feature.window) + (label_delay_ms if feature.group == "labels" else 0)


def event_time_ms(value: object) -> int:
    """A decision's ``event_time`` as epoch milliseconds (fastavro gives tz-aware datetimes).

    Raises:
        TypeError: neither a datetime nor an integer.
    """
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"event_time {value!r:.60} is neither a datetime nor epoch milliseconds")


class StreamClock:
    """How long, in event time, the stream has run since the first decision seen."""

    def __init__(self, label_delay_ms: int) -> None:
        if label_delay_ms < 0:
            raise ValueError(f"label delay must be >= 0 ms, got {label_delay_ms}")
        self.label_delay_ms = label_delay_ms
        self.first_ms: int | None = None
        self.latest_ms: int | None = None

    def observe(self, times_ms: Iterable[int]) -> None:
        """Advance with a batch's event times (in any order: the earliest of the first batch is the origin)."""
        batch = list(times_ms)
        if not batch:
            return
        if self.first_ms is None:
            self.first_ms = min(batch)
        newest = max(batch)
        self.latest_ms = newest if self.latest_ms is None else max(self.latest_ms, newest)

    @property
    def elapsed_ms(self) -> int:
        """Event time from the first decision to the latest (0 before any)."""
        if self.first_ms is None or self.latest_ms is None:
            return 0
        return max(self.latest_ms - self.first_ms, 0)

    def warming(self, names: Sequence[str], oldest_ms: int | None) -> frozenset[str]:
        """The windowed names not to be judged over a drift window whose oldest decision has event
        time ``oldest_ms`` (None: an empty window). A name is judged only when even that oldest
        decision came more than its warm-up after the stream's first: then every value in the
        window was computed over a full feature window, not merely the latest ones."""
        ran = -1 if self.first_ms is None or oldest_ms is None else oldest_ms - self.first_ms
        return frozenset(n for n in names if (w := warm_up_ms(n, self.label_delay_ms)) > 0 and ran <= w)
