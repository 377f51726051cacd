"""The benchmark's arithmetic, apart from the processes it drives: the open-loop schedule, latency
from each event's scheduled send time, the median and spread of repeated trials, the sustained
rules of both delivery modes, and the ladder with its bisection (docs/INTERFACES.md, benchmark section).

Pure functions, so that ``tests/bench`` checks them in milliseconds against hand-worked figures;
``bench/e2e.py`` feeds them what the real systems did.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SUSTAINED_FRACTION = 0.95
SUSTAINED_P99_MS = 500.0
LATENCY_KEYS = ("p50", "p95", "p99", "max")


def schedule_ms(start_ms: float, count: int, rate: float) -> list[int]:
    """When each of ``count`` events is due, open loop: event ``i`` at ``start + i / rate``,
    whenever the one before it actually went out. A generator that falls behind sends late, and
    the lateness is counted in the latency, because latency starts from these times."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 events/s, got {rate!r}")
    return [int(start_ms + i * 1000.0 / rate) for i in range(count)]


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 (linear interpolation between the closest ranks) and max; None when empty."""
    if not values:
        return dict.fromkeys(LATENCY_KEYS)
    arr = np.asarray(values, dtype=float)
    pct = {f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)}
    return {**pct, "max": float(arr.max())}


def trial_figures(
    offered: float,
    scheduled: Mapping[str, int],
    sent: Mapping[str, int],
    received: Mapping[str, int],
    duplicates: int,
) -> dict[str, Any]:
    """One trial of one load: latency = received - *scheduled* send time; achieved = decided events
    over the time decisions came out while input flowed (last decision - first scheduled send -
    the smallest latency), capped at 105 % of offered; ``send_lag_ms`` = actual - scheduled send
    time, how far the generator fell behind its schedule."""
    got = [e for e in scheduled if e in received]
    latencies = [float(received[e] - scheduled[e]) for e in got]
    if latencies:
        span_s = (max(received[e] for e in got) - min(scheduled.values()) - min(latencies)) / 1000
        achieved = min(len(got) / max(span_s, 1e-3), offered * 1.05)
    else:
        achieved = 0.0
    lags = [float(sent[e] - scheduled[e]) for e in scheduled if e in sent]
    lag = percentiles(lags)
    return {
        "offered_eps": offered,
        "achieved_eps": round(achieved, 1),
        "events": len(scheduled),
        "lost": len(scheduled) - len(got),
        "duplicates": duplicates,
        "latency_ms": percentiles(latencies),
        "send_lag_ms": {"p99": lag["p99"], "max": lag["max"]},
    }


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _spread(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    return {"min": min(present) if present else None, "max": max(present) if present else None}


def combine_trials(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One load step from its trials: ``achieved_eps`` and each latency figure are the medians over
    the trials; ``events``, ``lost`` and ``duplicates`` are totals (a loss in any trial counts);
    ``spread`` holds each figure's min and max; ``trial_runs`` the trials themselves."""
    if not trials:
        raise ValueError("a load step needs at least one trial")
    offered = {t["offered_eps"] for t in trials}
    if len(offered) != 1:
        raise ValueError(f"trials of one step must share offered_eps, got {sorted(offered)}")
    achieved = [t["achieved_eps"] for t in trials]
    latency = {k: _median([t["latency_ms"][k] for t in trials]) for k in LATENCY_KEYS}
    spread: dict[str, dict[str, float | None]] = {"achieved_eps": _spread(achieved)}
    spread |= {f"latency_{k}_ms": _spread([t["latency_ms"][k] for t in trials]) for k in LATENCY_KEYS}
    spread["send_lag_max_ms"] = _spread([t["send_lag_ms"]["max"] for t in trials])
    return {
        "offered_eps": offered.pop(),
        "achieved_eps": _median(achieved),
        "events": sum(t["events"] for t in trials),
        "lost": sum(t["lost"] for t in trials),
        "duplicates": sum(t["duplicates"] for t in trials),
        "latency_ms": latency,
        "trials": len(trials),
        "spread": spread,
        "trial_runs": [dict(t) for t in trials],
    }


@dataclass(frozen=True)
class SustainedRule:
    """When a load step counts as sustained (docs/INTERFACES.md): the median trial's achieved rate at
    least ``fraction`` of offered and its p99 at most ``p99_limit_ms``, nothing lost in any trial,
    and, under exactly-once, nothing duplicated in any trial."""

    delivery: str
    p99_limit_ms: float
    forbid_duplicates: bool
    fraction: float = SUSTAINED_FRACTION

    def holds(self, step: Mapping[str, Any]) -> bool:
        p99 = step["latency_ms"]["p99"]
        return bool(
            step["achieved_eps"] is not None
            and step["achieved_eps"] >= self.fraction * step["offered_eps"]
            and step["lost"] == 0
            and p99 is not None
            and p99 <= self.p99_limit_ms
            and not (self.forbid_duplicates and step["duplicates"] > 0)
        )

    def describe(self) -> str:
        text = (
            f"{self.delivery}: median achieved_eps >= {self.fraction:.0%} of offered_eps, "
            f"no event lost in any trial, median p99 <= {self.p99_limit_ms:.0f} ms"
        )
        return text + (", no event duplicated in any trial" if self.forbid_duplicates else "")


def rule_for(delivery: str, checkpoint_interval_ms: int) -> SustainedRule:
    """At-least-once: p99 <= 500 ms. Exactly-once: decisions become visible at checkpoints, so
    p99 <= the checkpoint interval + 500 ms, and nothing may be duplicated."""
    if delivery == "exactly-once":
        return SustainedRule(delivery, checkpoint_interval_ms + SUSTAINED_P99_MS, forbid_duplicates=True)
    if delivery in ("at-least-once", "none"):
        return SustainedRule(delivery, SUSTAINED_P99_MS, forbid_duplicates=False)
    raise ValueError(f"delivery {delivery!r}: expected 'at-least-once', 'exactly-once' or 'none'")


@dataclass
class Ceiling:
    """Where a system stopped: ``max_sustained`` is the highest load sustained (0 if none);
    ``first_failed`` the lowest load that failed (None when every load tried was sustained, then
    ``bounded`` is False); ``tried`` every (load, sustained) in the order run."""

    max_sustained: float = 0.0
    first_failed: float | None = None
    tried: list[tuple[float, bool]] = field(default_factory=list)
    bisect_steps: int = 0

    @property
    def bounded(self) -> bool:
        return self.first_failed is not None

    def as_json(self, tolerance: float) -> dict[str, Any]:
        return {
            "max_sustained_eps": self.max_sustained,
            "first_failed_eps": self.first_failed,
            "bounded": self.bounded,
            "bisect_steps": self.bisect_steps,
            "tolerance": tolerance,
            "tried": [{"offered_eps": load, "sustained": ok} for load, ok in self.tried],
        }


def close_enough(low: float, high: float, tolerance: float) -> bool:
    """True when the last sustained and the first failed load are within ``tolerance`` of each
    other, relative to the failed one (so a low of 0 is never close to a positive high)."""
    return high - low <= tolerance * high


def find_ceiling(
    ladder: Sequence[float],
    try_load: Callable[[float], bool],
    tolerance: float = 0.10,
    max_bisect_steps: int = 4,
) -> Ceiling:
    """Climb ``ladder`` (ascending) until a load is not sustained, then bisect between the last
    sustained load (0 when the first failed) and the first failed one, at whole events/s, until
    they are within ``tolerance`` or ``max_bisect_steps`` extra loads have been tried."""
    if list(ladder) != sorted(ladder) or not ladder:
        raise ValueError(f"loads must be a non-empty ascending list, got {list(ladder)}")
    ceiling = Ceiling()
    for load in ladder:
        ok = try_load(load)
        ceiling.tried.append((load, ok))
        if not ok:
            ceiling.first_failed = load
            break
        ceiling.max_sustained = load
    if ceiling.first_failed is None:
        return ceiling
    low, high = ceiling.max_sustained, ceiling.first_failed
    while ceiling.bisect_steps < max_bisect_steps and not close_enough(low, high, tolerance):
        mid = float(round((low + high) / 2))
        if mid <= low or mid >= high:
            break
        ok = try_load(mid)
        ceiling.tried.append((mid, ok))
        ceiling.bisect_steps += 1
        if ok:
            low = mid
        else:
            high = mid
    ceiling.max_sustained, ceiling.first_failed = low, high
    return ceiling
