"""The drift state of every model version seen: windows fed with decoded decisions. No I/O here:
references come from a callable, readings go to the caller (the Kafka glue in :mod:`monitoring.monitor`,
the benchmark, the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraud_core.drift_reference import SCORE
from monitoring.drift import DriftReading, Window
from monitoring.exceptions import InvalidReference
from monitoring.reference import ModelReference
from monitoring.warmup import StreamClock, event_time_ms

log = logging.getLogger(__name__)

PROFILE_MISSING = "profile_missing"


@dataclass
class VersionState:
    """One model version's window and the reference it is compared with (None: rates only)."""

    window: Window
    reference: ModelReference | None


class DriftTracker:
    """Feeds decisions, grouped by ``model_version``, into one :class:`Window` each.

    Args:
        feature_names: the model's features, in the order the reference bins are kept.
        window: decisions per window.
        load_reference: returns a version's reference or raises :class:`InvalidReference`; called
            once per version (a version without a reference keeps only the rates).
        label_delay_ms: how long after a payment its label arrives, for the warm-up of the
            label-driven features (:mod:`monitoring.warmup`).
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        window: int,
        load_reference: Callable[[str], ModelReference],
        label_delay_ms: int,
    ) -> None:
        self.feature_names = tuple(feature_names)
        self.window = window
        self.load_reference = load_reference
        # One clock for every version: the job's windows do not restart when the model changes.
        self.clock = StreamClock(label_delay_ms)
        self.versions: dict[str, VersionState] = {}
        self._missing_index = self.feature_names.index(PROFILE_MISSING)

    def state(self, version: str) -> VersionState:
        """The version's state, created (and its reference loaded) on first sight."""
        found = self.versions.get(version)
        if found is None:
            try:
                reference: ModelReference | None = self.load_reference(version)
            except InvalidReference as exc:
                log.warning("no drift for %s: %s", version, exc.reason)
                reference = None
            bins = None if reference is None else {**reference.features, SCORE: reference.score}
            found = self.versions[version] = VersionState(Window(self.window, bins), reference)
        return found

    def observe(self, decisions: Iterable[Mapping[str, Any]]) -> tuple[dict[str, int], int]:
        """Add decoded decisions (``features``, ``score``, ``model_version``, ``decision``,
        ``event_time``; the event times advance the warm-up clock); returns
        how many were added per version, and how many were skipped for lacking a field or one of
        the model's features (a decision of another feature set: a schema or model mismatch)."""
        rows: dict[str, list[list[float]]] = {}
        flagged: dict[str, list[bool]] = {}
        times: dict[str, list[int]] = {}
        names = self.feature_names
        skipped = 0
        for d in decisions:
            try:
                version = str(d["model_version"])
                features = d["features"]
                row = [float(features[n]) for n in names]
                row.append(float(d["score"]))
                is_flagged = d["decision"] == "FLAGGED"
                when = event_time_ms(d["event_time"])
            except (KeyError, TypeError, ValueError):
                skipped += 1
                continue
            rows.setdefault(version, []).append(row)
            flagged.setdefault(version, []).append(is_flagged)
            times.setdefault(version, []).append(when)
        self.clock.observe(t for batch in times.values() for t in batch)
        for version, version_rows in rows.items():
            state = self.state(version)
            values = np.asarray(version_rows, dtype=np.float64)
            missing = values[:, self._missing_index] > 0.5
            if state.reference is None:
                values = values[:, :0]
            version_times = np.asarray(times[version], dtype=np.int64)
            state.window.add(values, np.asarray(flagged[version], dtype=np.bool_), missing, version_times)
        return {v: len(r) for v, r in rows.items()}, skipped

    def warming(self, version: str) -> frozenset[str]:
        """The features not to be judged yet over ``version``'s window: some of its decisions were
        computed while those features' windows were still filling (see :mod:`monitoring.warmup`)."""
        return self.clock.warming(self.feature_names, self.versions[version].window.oldest_ms)

    def readings(self, min_events: int) -> dict[str, tuple[DriftReading, ModelReference | None]]:
        """Every version's current reading, for windows holding at least ``min_events``."""
        return {
            version: (state.window.reading(), state.reference)
            for version, state in self.versions.items()
            if state.window.filled >= min_events
        }
