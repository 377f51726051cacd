"""Parity of a backtest with live: the same events, scored by the same model version, must carry the
same decision, score, threshold, features and reasons. Pure functions over decision records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

COMPARED_FIELDS = (
    "decision",
    "action",
    "score",
    "threshold",
    "block_threshold",
    "model_version",
    "degraded",
    "reasons",
    "rules_fired",
    "rules_version",
    "features",
)
MAX_LISTED = 50


@dataclass
class Parity:
    """Outcome of comparing one backtest model's decisions with the live ones."""

    model_version: str
    compared: int = 0
    identical: int = 0
    not_scored_live: int = 0  # in the range, but the live topics have no decision for it
    other_live_model: dict[str, int] = field(default_factory=dict)  # live used another version
    differences: list[dict[str, Any]] = field(default_factory=list)  # at most MAX_LISTED
    differing: int = 0

    @property
    def is_identical(self) -> bool:
        return self.compared > 0 and self.differing == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "compared": self.compared,
            "identical": self.identical,
            "differing": self.differing,
            "not_scored_live": self.not_scored_live,
            "scored_live_by_other_models": self.other_live_model,
            "verdict": "identical"
            if self.is_identical
            else ("differences" if self.differing else "nothing compared"),
            "differences": self.differences,
        }


def field_differences(backtest: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """``{field: {"live": ..., "backtest": ...}}`` for every compared field that differs; features
    are compared name by name, so only the differing features are listed."""
    out: dict[str, Any] = {}
    for name in COMPARED_FIELDS:
        a, b = live.get(name), backtest.get(name)
        if name == "features":
            fa, fb = dict(a or {}), dict(b or {})
            diff = {
                k: {"live": fa.get(k), "backtest": fb.get(k)}
                for k in sorted(set(fa) | set(fb))
                if fa.get(k) != fb.get(k)
            }
            if diff:
                out[name] = diff
        elif a != b:
            out[name] = {"live": a, "backtest": b}
    return out


def compare_with_live(
    model_version: str, backtest: Mapping[str, Mapping[str, Any]], live: Mapping[str, Mapping[str, Any]]
) -> Parity:
    """Compare every backtest decision (by event_id) with the live decision of the same event, when
    the live one was made by ``model_version``; events live scored with another version are counted."""
    result = Parity(model_version)
    for event_id, mine in backtest.items():
        theirs = live.get(event_id)
        if theirs is None:
            result.not_scored_live += 1
            continue
        if theirs.get("model_version") != model_version and not theirs.get("degraded"):
            version = str(theirs.get("model_version"))
            result.other_live_model[version] = result.other_live_model.get(version, 0) + 1
            continue
        result.compared += 1
        diff = field_differences(mine, theirs)
        if diff:
            result.differing += 1
            if len(result.differences) < MAX_LISTED:
                result.differences.append({"event_id": event_id, **diff})
        else:
            result.identical += 1
    return result
