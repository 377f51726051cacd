"""A model card's drift reference read back, per version (the scheme: :mod:`fraud_core.drift_reference`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraud_core.drift_reference import SCORE, Bins
from monitoring.exceptions import InvalidReference


@dataclass(frozen=True)
class ModelReference:
    """A model version's reference bins, by feature, plus the score's."""

    version: str
    features: dict[str, Bins]
    score: Bins
    flag_rate: float | None  # the held-out flag rate of the model alone, when the card gives it


def parse_card(card: Mapping[str, Any], feature_names: Sequence[str]) -> ModelReference:
    """The drift reference of a model card.

    Raises:
        InvalidReference: the card has no ``drift_reference``, or a feature of ``feature_names`` or
            the score is missing, or its edges and proportions do not fit together.
    """
    version = str(card.get("version", "?"))
    section = card.get("drift_reference")
    if not isinstance(section, Mapping) or not isinstance(section.get("bins"), Mapping):
        raise InvalidReference(version, "the card has no drift_reference.bins")
    raw = section["bins"]
    parsed: dict[str, Bins] = {}
    for name in [*feature_names, SCORE]:
        entry = raw.get(name)
        if not isinstance(entry, Mapping):
            raise InvalidReference(version, f"drift_reference has no bins for {name!r}")
        try:
            edges = np.asarray(entry["edges"], dtype=np.float64)
            props = np.asarray(entry["proportions"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidReference(version, f"bins of {name!r} are malformed: {exc!r}") from exc
        if props.ndim != 1 or edges.ndim != 1 or len(props) != len(edges) + 1:
            raise InvalidReference(
                version, f"bins of {name!r}: {len(edges)} edges need {len(edges) + 1} proportions"
            )
        if np.any(np.diff(edges) <= 0) or abs(float(props.sum()) - 1.0) > 1e-6:
            raise InvalidReference(version, f"bins of {name!r}: edges must increase and proportions sum to 1")
        parsed[name] = Bins(edges, props)
    held_out = card.get("metrics", {}).get("held_out", {}) if isinstance(card.get("metrics"), Mapping) else {}
    flag_rate = held_out.get("flag_rate") if isinstance(held_out, Mapping) else None
    score = parsed.pop(SCORE)
    return ModelReference(
        version, parsed, score, float(flag_rate) if isinstance(flag_rate, int | float) else None
    )
