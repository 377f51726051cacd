"""Drift measures and the sliding window they are computed over. Pure functions, no I/O.

**PSI** (population stability index) of live proportions ``p`` against reference proportions
``q`` over the same bins: ``sum((p_i - q_i) * ln(p_i / q_i))``. An empty bin makes a term
infinite, so both proportions are floored at :data:`PSI_EPSILON` (1e-4) first: a bin empty on
one side then contributes at most about ``q * ln(q / 1e-4)``. The usual reading: below 0.1
stable, 0.1-0.25 a moderate shift, above 0.25 a major one.

**Jensen-Shannon distance** (base 2) on the same bins is the second measure, chosen over the
alternatives because:

* it needs no epsilon: the mixture ``m = (p + q) / 2`` is non-zero wherever ``p`` or ``q`` is,
  so an empty bin (a value never seen in training, a category that vanished) is handled exactly,
  where PSI's value there depends on the epsilon chosen;
* it is bounded in [0, 1] and symmetric (a true metric), so one threshold reads the same for
  every feature, whatever its number of bins, and live-vs-reference equals reference-vs-live;
* unlike the Kolmogorov-Smirnov statistic it is defined for the many discrete features here
  (flags, counts, tiers, channel codes), where KS on tied values is ill-posed and the CDF
  ordering of codes such as ``channel_code`` means nothing.

**Window**: the last ``size`` decisions of one model version, by arrival (count-based, not
event-time). A fixed count gives a fixed sampling noise (PSI of a sample of ``n`` from the
reference itself is about ``(bins - 1) / n``), so a threshold means the same at 10 and at
10,000 events per second; an event-time window would be noisy at low rates and slow at high.
The window keeps each event's bin per variable in a ring buffer and maintains the counts
incrementally, so adding a batch costs O(batch x variables), whatever the window size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraud_core.drift_reference import Bins

FloatArray = npt.NDArray[np.float64]
PSI_EPSILON = 1e-4


def psi(live: Sequence[float] | FloatArray, reference: Sequence[float] | FloatArray) -> float:
    """Population stability index of ``live`` against ``reference`` proportions (same bins)."""
    p = np.maximum(np.asarray(live, dtype=np.float64), PSI_EPSILON)
    q = np.maximum(np.asarray(reference, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))


def js_distance(live: Sequence[float] | FloatArray, reference: Sequence[float] | FloatArray) -> float:
    """Jensen-Shannon distance, base 2, in [0, 1]; both inputs are normalised to sum to 1."""
    p = np.asarray(live, dtype=np.float64)
    q = np.asarray(reference, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2
    divergence = 0.0
    for side in (p, q):
        nz = side > 0
        divergence += 0.5 * float(np.sum(side[nz] * np.log2(side[nz] / m[nz])))
    return float(np.sqrt(max(divergence, 0.0)))


@dataclass(frozen=True)
class DriftReading:
    """What one window says: its size, per-variable PSI and JS distance, and the two rates."""

    events: int
    psi: dict[str, float]
    js: dict[str, float]
    flag_rate: float
    missing_profile_rate: float


class Window:
    """The last ``size`` decisions of one model version (see the module docstring).

    Args:
        size: decisions in the window.
        bins: the reference bins per variable (features and ``score``), or None for a version
            without a reference (fallback decisions): then only the rates are kept.
    """

    def __init__(self, size: int, bins: dict[str, Bins] | None) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.size = size
        self.names = list(bins or {})
        self._bins = [b for b in (bins or {}).values()]
        self._width = max((b.size for b in self._bins), default=1)
        self._rows = np.zeros((size, len(self.names)), dtype=np.int32)
        self._flags = np.zeros((size, 2), dtype=np.bool_)  # flagged, profile missing
        self._times = np.zeros(size, dtype=np.int64)  # event time (epoch ms) of each kept event
        self._counts = np.zeros(len(self.names) * self._width, dtype=np.int64)
        self._flag_counts = np.zeros(2, dtype=np.int64)
        self._offsets = np.arange(len(self.names), dtype=np.int64) * self._width
        self._pos = 0
        self.filled = 0

    def bin_rows(self, values: FloatArray) -> npt.NDArray[np.int32]:
        """The bin of every value of ``values`` (rows = events, columns = :attr:`names`)."""
        out = np.empty(values.shape, dtype=np.int32)
        for j, b in enumerate(self._bins):
            out[:, j] = b.index(values[:, j])
        return out

    def add(
        self,
        values: FloatArray,
        flagged: npt.NDArray[np.bool_],
        missing: npt.NDArray[np.bool_],
        times_ms: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """Add a batch of events: ``values`` has one row per event and one column per name (no
        columns when the window has no reference); the two flags and the event times (epoch ms,
        for :attr:`oldest_ms`; 0 when not given) are one per event."""
        n = len(flagged)
        if n == 0:
            return
        rows = self.bin_rows(values) if self.names else np.zeros((n, 0), dtype=np.int32)
        flags = np.column_stack([flagged, missing])
        times = np.zeros(n, dtype=np.int64) if times_ms is None else np.asarray(times_ms, dtype=np.int64)
        if n > self.size:  # only the newest `size` events can stay
            rows, flags, times, n = rows[-self.size :], flags[-self.size :], times[-self.size :], self.size
        slots = (self._pos + np.arange(n)) % self.size
        if self.filled == self.size or self.filled + n > self.size:
            evicted = slots[slots < self.filled] if self.filled < self.size else slots
            self._count(self._rows[evicted], self._flags[evicted], -1)
        self._rows[slots] = rows
        self._flags[slots] = flags
        self._times[slots] = times
        self._count(rows, flags, +1)
        self._pos = int((self._pos + n) % self.size)
        self.filled = min(self.size, self.filled + n)

    @property
    def oldest_ms(self) -> int | None:
        """The earliest event time among the events in the window (None when empty)."""
        return int(self._times[: self.filled].min()) if self.filled else None

    def _count(self, rows: npt.NDArray[np.int32], flags: npt.NDArray[np.bool_], sign: int) -> None:
        if rows.size:
            flat = (rows + self._offsets[None, :]).ravel()
            self._counts += sign * np.bincount(flat, minlength=len(self._counts))
        self._flag_counts += sign * flags.sum(axis=0)

    def proportions(self, name: str) -> FloatArray:
        """The window's share of events per bin of ``name``."""
        j = self.names.index(name)
        counts = self._counts[j * self._width : j * self._width + self._bins[j].size]
        return counts / max(self.filled, 1)

    def reading(self) -> DriftReading:
        """PSI and JS distance per variable, flag rate and missing-profile rate, now."""
        n = max(self.filled, 1)
        psis: dict[str, float] = {}
        jss: dict[str, float] = {}
        for name, b in zip(self.names, self._bins, strict=True):
            live = self.proportions(name)
            psis[name] = psi(live, b.proportions)
            jss[name] = js_distance(live, b.proportions) if self.filled else 0.0
        return DriftReading(
            self.filled, psis, jss, float(self._flag_counts[0] / n), float(self._flag_counts[1] / n)
        )
