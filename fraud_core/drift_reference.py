"""Reference distributions: the training data of a model, binned, as its card states them.

Training writes the card's section (:func:`reference_section`); the drift monitor reads it back
(``monitoring.reference.parse_card``). Both sides live on this one scheme, so it sits in fraud_core.

One scheme for every feature and for the score, so a reader of the card needs one rule:

* the bin edges are the distinct values among the minimum, the deciles and the 95th and 99th
  percentiles of the reference values (``numpy.quantile``, linear); the two tail percentiles
  resolve the upper tail, where fraud scores and large amounts live;
* bins are right-closed intervals ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``, so a value
  equal to an edge falls in the bin the edge closes.

Quantiles collapse where the data has point masses, and right-closed bins then give each point
mass a bin of its own: a flag such as ``known_device`` (mostly 1) gets ``(-inf, 0]``, ``(0, 1]``
and ``(1, +inf)`` (the minimum is an edge so that a rare value below a point mass keeps its own
bin); a small integer feature such as ``risk_tier`` one bin per frequent value. No separate
categorical handling is needed, and the open outer bins catch live values outside the training
range (new amounts, new countries) instead of dropping them.

The card's ``drift_reference`` section::

    {"scheme": "...", "bins": {"amount_eur": {"edges": [...], "proportions": [...], "source": "..."},
                               ..., "score": {...}}}

``proportions`` has one entry more than ``edges`` and sums to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SCORE = "score"
QUANTILES = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
SCHEME = (
    "edges = distinct values among the minimum, deciles, 95th and 99th percentiles of the reference "
    "values (numpy.quantile, linear); bins are right-closed intervals "
    "(-inf, e0], (e0, e1], ..., (e_last, +inf); proportions = share of reference values per bin"
)
_ROUND = 9


@dataclass(frozen=True, slots=True)
class Bins:
    """One variable's reference: bin edges and the share of reference values in each bin."""

    edges: FloatArray
    proportions: FloatArray

    def index(self, values: FloatArray) -> npt.NDArray[np.intp]:
        """The bin of each value (right-closed: ``edges[i-1] < v <= edges[i]`` is bin ``i``)."""
        return np.searchsorted(self.edges, values, side="left")

    def index_one(self, value: float) -> int:
        """The bin of one value (the per-event path: no array allocation)."""
        return int(np.searchsorted(self.edges, value, side="left"))

    @property
    def size(self) -> int:
        return len(self.proportions)


def bin_values(values: Sequence[float] | FloatArray) -> Bins:
    """Bin ``values`` by their distinct quantiles (see the module docstring).

    Raises:
        ValueError: ``values`` is empty or holds a non-finite number.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no reference values to bin")
    if not np.isfinite(arr).all():
        raise ValueError("reference values must be finite")
    edges = np.unique(np.round(np.quantile(arr, QUANTILES), _ROUND))
    counts = np.bincount(np.searchsorted(edges, arr, side="left"), minlength=len(edges) + 1)
    return Bins(edges, counts / arr.size)


def reference_section(
    features: Mapping[str, FloatArray], scores: FloatArray, feature_source: str, score_source: str
) -> dict[str, Any]:
    """The card's ``drift_reference``: binned features (``feature_source`` says which rows) and
    the binned score (``score_source`` likewise), with the scheme stated."""
    bins: dict[str, Any] = {}
    for name, column in [*features.items(), (SCORE, scores)]:
        b = bin_values(column)
        bins[name] = {
            "edges": [float(e) for e in b.edges],
            "proportions": [round(float(p), _ROUND) for p in b.proportions],
            "source": score_source if name == SCORE else feature_source,
        }
    return {"scheme": SCHEME, "bins": bins}
