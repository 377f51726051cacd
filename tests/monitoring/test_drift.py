"""Unit tests of the drift measures, the reference bins and the sliding window. No processes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from fraud_core.drift_reference import SCORE, bin_values, reference_section
from fraud_core.feature_catalog import FEATURE_NAMES
from monitoring.drift import PSI_EPSILON, Window, js_distance, psi
from monitoring.exceptions import InvalidReference
from monitoring.reference import parse_card
from monitoring.tracker import DriftTracker


def brute_force_psi(reference: list[float], live: list[float], edges: list[float]) -> float:
    """PSI by the definition, one value at a time: find each value's right-closed bin by scanning
    the edges, count, divide, floor at the epsilon, sum (p - q) ln(p / q)."""

    def which(v: float) -> int:
        for i, e in enumerate(edges):
            if v <= e:
                return i
        return len(edges)

    n_bins = len(edges) + 1
    ref_counts = [0] * n_bins
    live_counts = [0] * n_bins
    for v in reference:
        ref_counts[which(v)] += 1
    for v in live:
        live_counts[which(v)] += 1
    total = 0.0
    for r, c in zip(ref_counts, live_counts, strict=True):
        q = max(r / len(reference), PSI_EPSILON)
        p = max(c / len(live), PSI_EPSILON)
        total += (p - q) * math.log(p / q)
    return total


@pytest.mark.parametrize(
    "shift",
    [0.0, 0.3, 2.0],
    ids=["same", "small-shift", "large-shift"],
)
def test_psi_of_the_window_equals_the_brute_force_computation(shift: float) -> None:
    rng = np.random.default_rng(5)
    reference = np.round(rng.lognormal(3, 1, 5000), 2)
    live = np.round(rng.lognormal(3 + shift, 1, 800), 2)
    bins = bin_values(reference)
    window = Window(800, {"amount": bins})
    window.add(live[:, None], np.zeros(800, bool), np.zeros(800, bool))
    expected = brute_force_psi(reference.tolist(), live.tolist(), bins.edges.tolist())
    assert window.reading().psi["amount"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_psi_with_empty_bins_uses_the_stated_epsilon() -> None:
    # The live data never falls in the first bin, and fills a bin the reference never saw.
    reference = [0.5, 0.5, 0.0]
    live = [0.0, 0.5, 0.5]
    expected = (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5) + (0.5 - PSI_EPSILON) * math.log(
        0.5 / PSI_EPSILON
    )
    assert psi(live, reference) == pytest.approx(expected)
    assert psi(reference, reference) == 0.0


def test_js_distance_agrees_with_scipy_and_needs_no_epsilon() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.random(8) * (rng.random(8) > 0.3)
        q = rng.random(8) + 0.01
        assert js_distance(p, q) == pytest.approx(float(jensenshannon(p, q, base=2)), abs=1e-12)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([0.2, 0.8], [0.2, 0.8]) == 0.0


def test_point_masses_get_bins_of_their_own_and_bins_are_right_closed() -> None:
    flag = np.array([1.0] * 990 + [0.0] * 10)  # known_device: mostly 1, rarely 0
    bins = bin_values(flag)
    assert bins.edges.tolist() == [0.0, 1.0]
    assert bins.proportions.tolist() == pytest.approx([0.01, 0.99, 0.0])
    assert bins.index(np.array([-1.0, 0.0, 0.5, 1.0, 7.0])).tolist() == [0, 0, 1, 1, 2]
    assert bins.index_one(1.0) == 1


def test_bin_values_refuses_empty_or_non_finite_input() -> None:
    with pytest.raises(ValueError, match="no reference values"):
        bin_values([])
    with pytest.raises(ValueError, match="finite"):
        bin_values([1.0, float("nan")])


def test_the_window_slides_over_exactly_the_last_events() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=(5000, 2))
    bins = {"a": bin_values(values[:1000, 0]), "b": bin_values(values[:1000, 1])}
    window = Window(700, bins)
    flagged = rng.random(5000) < 0.1
    missing = rng.random(5000) < 0.3
    seen = 0
    for size in [1, 50, 699, 2, 1000, 13, 700, 1500, 35]:  # batches smaller and larger than the window
        batch = slice(seen, seen + size)
        window.add(values[batch], flagged[batch], missing[batch])
        seen += size
        last = slice(max(0, seen - 700), seen)
        assert window.filled == min(seen, 700)
        for j, name in enumerate(("a", "b")):
            idx = bins[name].index(values[last, j])
            expected = np.bincount(idx, minlength=bins[name].size) / window.filled
            np.testing.assert_allclose(window.proportions(name), expected)
        reading = window.reading()
        assert reading.flag_rate == pytest.approx(flagged[last].mean())
        assert reading.missing_profile_rate == pytest.approx(missing[last].mean())


def _card(version: str, rng: np.random.Generator) -> dict[str, Any]:
    features = {n: rng.integers(0, 5, 2000).astype(float) for n in FEATURE_NAMES}
    section = reference_section(features, rng.random(2000), "training", "held-out")
    return {"version": version, "drift_reference": section, "metrics": {"held_out": {"flag_rate": 0.03}}}


def test_parse_card_reads_what_reference_section_writes() -> None:
    card = _card("m1", np.random.default_rng(3))
    ref = parse_card(card, FEATURE_NAMES)
    assert ref.version == "m1" and ref.flag_rate == 0.03
    assert list(ref.features) == list(FEATURE_NAMES)
    written = card["drift_reference"]["bins"][SCORE]
    assert ref.score.edges.tolist() == written["edges"]
    assert "right-closed" in card["drift_reference"]["scheme"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("drift_reference"), "no drift_reference"),
        (lambda c: c["drift_reference"]["bins"].pop("amount_eur"), "no bins for 'amount_eur'"),
        (lambda c: c["drift_reference"]["bins"][SCORE]["proportions"].pop(), "need"),
        (lambda c: c["drift_reference"]["bins"]["mcc_risk"]["edges"].reverse(), "increase"),
    ],
    ids=["no-section", "feature-missing", "wrong-length", "unsorted"],
)
def test_parse_card_names_the_version_and_the_problem(change: Any, message: str) -> None:
    card = _card("m-broken", np.random.default_rng(4))
    change(card)
    with pytest.raises(InvalidReference, match=message) as err:
        parse_card(card, FEATURE_NAMES)
    assert "m-broken" in str(err.value)


def _decision(version: str, value: float, flagged: bool, missing: bool) -> dict[str, Any]:
    features = dict.fromkeys(FEATURE_NAMES, value)
    features["profile_missing"] = float(missing)
    return {
        "model_version": version,
        "features": features,
        "score": value / 10,
        "decision": "FLAGGED" if flagged else "APPROVED",
        "event_time": 1_767_225_600_000,
    }


def test_tracker_keeps_one_window_per_version_and_rates_without_a_reference() -> None:
    rng = np.random.default_rng(6)
    cards = {"m1": _card("m1", rng)}

    def load(version: str) -> Any:
        if version not in cards:
            raise InvalidReference(version, "unknown")
        return parse_card(cards[version], FEATURE_NAMES)

    tracker = DriftTracker(FEATURE_NAMES, 100, load, label_delay_ms=0)
    batch = [_decision("m1", 1.0, i % 4 == 0, i % 2 == 0) for i in range(100)]
    batch += [_decision("fallback-rules", 0.0, True, False) for _ in range(10)]
    batch.append(
        {"model_version": "m1", "features": {"amount_eur": 1.0}, "score": 0.1, "decision": "APPROVED"}
    )
    counts, skipped = tracker.observe(batch)
    assert counts == {"m1": 100, "fallback-rules": 10} and skipped == 1
    readings = tracker.readings(min_events=50)
    m1, m1_ref = readings["m1"]
    assert m1_ref is not None and m1.flag_rate == 0.25 and m1.missing_profile_rate == 0.5
    assert set(m1.psi) == {*FEATURE_NAMES, SCORE}
    assert m1.psi["amount_eur"] > 0.25  # every value 1.0 against a uniform 0..4 reference
    assert "fallback-rules" not in readings  # 10 < min_events
    fallback, fallback_ref = tracker.readings(min_events=1)["fallback-rules"]
    assert fallback_ref is None and fallback.psi == {} and fallback.flag_rate == 1.0
