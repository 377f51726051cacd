"""Reason codes: the few features that pushed a score up, in words a fraud analyst understands.

Attribution by perturbation toward typical values: for a row, each feature in turn is replaced by
its training median (kept in the model card) and the row re-scored; a feature's contribution is
how much the model's raw margin (log-odds, before calibration) drops without it. The margin, not
the calibrated probability, because isotonic calibration saturates: at a score of 1.0 removing
any single one of several strong signals changes nothing, and the reasons would come out empty.
All perturbed rows of a request go through the model in one vectorised call. Only rows scoring at
least ``REASON_FRACTION`` of the threshold get reasons (an approved payment far below the line has
nothing to explain), which keeps the cost to a handful of extra rows per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from fraud_core.feature_catalog import REASON_TEXT

REASON_FRACTION = 0.5
MAX_REASONS = 3
MIN_CONTRIBUTION = 0.05  # log-odds; smaller drops are noise of a piecewise-constant model


def explain(
    margin: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
    x: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    reference: npt.NDArray[np.float64],
    names: Sequence[str],
    min_score: float,
) -> list[list[str]]:
    """Reason texts per row of ``x``, strongest first; empty for rows scoring below ``min_score``.

    Args:
        margin: the model's raw margin (log-odds) for a matrix of rows.
        x: the rows, shape ``(n, len(names))``.
        scores: the calibrated scores of ``x``; they select the rows to explain.
        reference: the typical value of each feature (training medians), shape ``(len(names),)``.
        names: feature names in column order.
        min_score: rows scoring below this get no reasons.
    """
    out: list[list[str]] = [[] for _ in range(x.shape[0])]
    rows = np.flatnonzero(scores >= min_score)
    if rows.size == 0:
        return out
    candidates = x[rows]
    # Only features away from their typical value can contribute: a feature already at its
    # reference re-scores to the same margin (contribution exactly 0), so it is not re-scored.
    row_idx, col_idx = np.nonzero(candidates != reference)
    perturbed = candidates[row_idx]
    perturbed[np.arange(row_idx.size), col_idx] = reference[col_idx]
    base = margin(candidates)
    contribution = np.zeros_like(candidates)
    if row_idx.size:
        contribution[row_idx, col_idx] = base[row_idx] - margin(perturbed)
    order = np.argsort(-contribution, axis=1, kind="stable")[:, :MAX_REASONS]
    for k, row in enumerate(rows.tolist()):
        out[row] = [
            REASON_TEXT[names[j]] for j in order[k].tolist() if contribution[k, j] >= MIN_CONTRIBUTION
        ]
    return out
