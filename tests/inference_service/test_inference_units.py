"""Unit tests of the scoring service's pure logic: no processes, milliseconds each."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator

from fraud_core.cost import CostModel
from fraud_core.feature_catalog import ABLATION_GROUPS, FEATURE_NAMES, REASON_TEXT, names_of
from fraud_core.model_card import ModelCard
from fraud_core.model_folder import CARD_FILE, LIVE_POINTER, read_pointer, save_version, write_pointer
from fraud_core.rules import load_rules
from fraud_core.simulator import SimConfig, Simulator
from inference_service.compiled import CompiledModel
from inference_service.core.config import Settings
from inference_service.exceptions import ModelRejectedError
from inference_service.metrics import Metrics
from inference_service.model_registry import ModelRegistry, load_model
from inference_service.reasons import explain
from inference_service.training.train import (
    Dataset,
    StressSet,
    TrainConfig,
    action_metrics,
    choose_thresholds,
    replay,
    replay_with_transactions,
    train,
)

N = len(FEATURE_NAMES)


@functools.cache  # trained once for the module: the tests only read the model and its data
def _synthetic_model(seed: int = 0) -> tuple[CalibratedClassifierCV, np.ndarray]:
    """Fraud iff feature 0 > 5 or (feature 3 > 2 and feature 7 > 1), with noise."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(0, 2, (6000, N)))
    y = ((x[:, 0] > 5) | ((x[:, 3] > 2) & (x[:, 7] > 1.5))).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=30, max_depth=5, random_state=seed).fit(x[:4000], y[:4000])
    model = CalibratedClassifierCV(FrozenEstimator(hgb), method="isotonic").fit(x[4000:], y[4000:])
    return model, x


def _card(version: str, x: np.ndarray) -> ModelCard:
    return ModelCard(
        version=version,
        features=list(FEATURE_NAMES),
        threshold=0.5,
        reference_values=dict(zip(FEATURE_NAMES, np.median(x, axis=0).tolist(), strict=True)),
    )


def test_compiled_predictor_equals_predict_proba_exactly() -> None:
    model, x = _synthetic_model()
    compiled = CompiledModel.from_estimator(model)
    rows = x[:700].copy()
    rows[::7, 3] = np.nan  # missing values follow the trees' missing_go_to_left
    assert np.array_equal(compiled.predict(rows), model.predict_proba(rows)[:, 1])
    assert np.array_equal(compiled.predict(rows[:1]), model.predict_proba(rows[:1])[:, 1])


def test_reasons_name_the_feature_that_drives_the_score() -> None:
    model, x = _synthetic_model()
    compiled = CompiledModel.from_estimator(model)
    reference = np.median(x, axis=0)
    row = reference.copy()
    row[0] = 9.0
    rows = np.vstack([row, reference])
    scores = compiled.predict(rows)
    reasons = explain(compiled.raw, rows, scores, reference, FEATURE_NAMES, min_score=0.25)
    assert reasons[0][0] == REASON_TEXT[FEATURE_NAMES[0]]
    assert reasons[1] == []


def test_thresholds_minimise_business_cost() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.95])
    y = np.array([0, 0, 1, 1, 1], dtype=np.int8)
    amount = np.array([10.0, 10.0, 3.0, 500.0, 500.0])
    data = Dataset(np.zeros((5, N)), y, np.array([""] * 5), amount, np.arange(5, dtype=np.int64))
    # Blocking costs nothing when no legitimate payment scores that high: block every fraud.
    assert choose_thresholds(scores, data, CostModel(5.0, 100.0, 0.0)) == (
        pytest.approx(0.25),
        pytest.approx(0.25),
    )
    # A legitimate payment at the top makes any block cost more than it saves: never block, and
    # review from 0.6 up (catching the 3 EUR fraud at 0.3 would cost a 5 EUR review).
    top = Dataset(data.x, np.array([0, 0, 1, 1, 0], dtype=np.int8), data.fraud_type, amount, data.event_time)
    assert choose_thresholds(scores, top, CostModel(5.0, 1e6, 0.0)) == (pytest.approx(0.6), None)


def test_block_threshold_stays_above_legitimate_scores_it_would_cost_to_block() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.95])
    y = np.array([0, 0, 1, 0, 1, 1], dtype=np.int8)
    amount = np.array([10.0, 10.0, 300.0, 10.0, 500.0, 500.0])
    data = Dataset(np.zeros((6, N)), y, np.array([""] * 6), amount, np.arange(6, dtype=np.int64))
    review, block = choose_thresholds(scores, data, CostModel(5.0, 100.0, 0.0))
    # Review from the 300 EUR fraud up; block above the legitimate 0.8 (one false block > 2 reviews).
    assert review == pytest.approx(0.25) and block == pytest.approx(0.85)
    actions = action_metrics(scores, data, review, block)
    assert actions["BLOCK"] == {"payments": 2, "frauds": 2, "precision": 1.0, "recall": 2 / 3}
    assert actions["REVIEW"]["payments"] == 2 and actions["flagged"]["recall"] == 1.0


def test_a_review_precision_floor_keeps_the_review_queue_from_filling_with_legitimate_payments() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9])
    y = np.array([0, 0, 1, 0, 0, 0, 1, 1], dtype=np.int8)
    amount = np.array([10.0, 10.0, 200.0, 10.0, 10.0, 10.0, 200.0, 500.0])
    data = Dataset(np.zeros((8, N)), y, np.array([""] * 8), amount, np.arange(8, dtype=np.int64))
    cost = CostModel(5.0, 1e6, 0.0)
    # Cheapest: review 0.3-0.6 (4 reviews, 20 EUR, one fraud in four) and block 0.7 and up.
    assert choose_thresholds(scores, data, cost) == (pytest.approx(0.25), pytest.approx(0.65))
    # A floor of 50 %: the cheapest band that qualifies reviews everything from 0.3 up, three frauds
    # in six, exactly the floor (30 EUR).
    assert choose_thresholds(scores, data, cost, min_review_precision=0.5) == (pytest.approx(0.25), None)
    # Above it, every band that qualifies costs more than missing the 200 EUR fraud at 0.3: block
    # from 0.65 and review nothing (200 EUR).
    review, block = choose_thresholds(scores, data, cost, min_review_precision=0.6)
    assert (review, block) == (pytest.approx(0.65), pytest.approx(0.65))
    assert action_metrics(scores, data, review, block)["REVIEW"]["payments"] == 0


def test_registry_round_trip_and_refusals(tmp_path: Path) -> None:
    model, x = _synthetic_model()
    save_version(tmp_path, model, _card("v1", x))
    write_pointer(tmp_path, LIVE_POINTER, "v1")
    assert read_pointer(tmp_path, LIVE_POINTER) == "v1"
    assert load_model(tmp_path, "v1").version == "v1"

    shutil.copytree(tmp_path / "v1", tmp_path / "v2")
    card = json.loads((tmp_path / "v2" / CARD_FILE).read_text())
    card.update(version="v2", features=[*FEATURE_NAMES[1:], FEATURE_NAMES[0]])
    (tmp_path / "v2" / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelRejectedError, match="do not match this service's FEATURE_NAMES"):
        load_model(tmp_path, "v2")

    narrow = HistGradientBoostingClassifier(max_iter=5).fit(x[:, :5], (x[:, 0] > 3).astype(int))
    save_version(
        tmp_path,
        CalibratedClassifierCV(FrozenEstimator(narrow)).fit(x[:, :5], x[:, 0] > 3),
        _card("v3", x),
    )
    with pytest.raises(ModelRejectedError, match="estimator expects 5 features"):
        load_model(tmp_path, "v3")


def test_refused_version_keeps_the_old_one_serving(tmp_path: Path) -> None:
    model, x = _synthetic_model()
    save_version(tmp_path, model, _card("good", x))
    save_version(tmp_path, model, _card("bad", x).model_copy(update={"features": ["only_one"]}))
    write_pointer(tmp_path, LIVE_POINTER, "good")
    metrics = Metrics()
    registry = ModelRegistry(tmp_path, None, metrics)
    assert registry.reload() is True
    write_pointer(tmp_path, LIVE_POINTER, "bad")
    assert registry.reload() is False
    assert registry.active is not None and registry.active.live.version == "good"
    assert (
        metrics.registry.get_sample_value(
            "scoring_model_reloads_total", {"role": "live", "outcome": "refused"}
        )
        == 1
    )


def test_settings_require_a_real_key_outside_local() -> None:
    assert Settings(APP_ENV="test").api_key  # the development key
    with pytest.raises(ValidationError, match="SCORING_API_KEY must be set"):
        Settings(APP_ENV="production")
    with pytest.raises(ValidationError, match="SCORING_API_KEY must be set"):
        Settings(APP_ENV="production", SCORING_API_KEY="dev-local-key-not-secret")
    key = "s3cret-of-some-length-at-least-32-chars"
    admin = "another-s3cret-at-least-32-characters"
    assert Settings(APP_ENV="production", SCORING_API_KEY=key, ADMIN_API_KEY=admin).api_key == key


@pytest.mark.integration  # trains real models: minutes, not milliseconds
def test_card_reports_the_stress_set_for_model_rules_and_both() -> None:
    """Training decides the stress set through fraud_core.decision.decide and the rules file: the
    card holds precision and recall per fraud type for each source, and the ablation on it."""
    sim = Simulator(SimConfig(seed=7, n_users=300, rate_eps=1.0))
    data = replay(sim.events(count=20_000), sim.profiles())
    stress_sim = Simulator(SimConfig(seed=1007, n_users=300, rate_eps=1.0, stress=True))
    stress_data, txns = replay_with_transactions(stress_sim.events(count=8_000), stress_sim.profiles())
    rules = load_rules()
    model, card = train(
        data, TrainConfig(max_iter=30), {}, StressSet(stress_data, txns, {"seed": 1007}), rules
    )

    # Recount here what each source does on the stress set. The model: REVIEW from the review
    # threshold, BLOCK from the block threshold. The rules: the most severe action of those that
    # fire. Both: decide() takes the most severe, so a payment is flagged when either flags it and
    # blocked when either blocks it.
    severity = {"APPROVE": 0, "REVIEW": 1, "BLOCK": 2}
    scores = model.predict_proba(stress_data.x)[:, 1]
    none = np.zeros(len(scores), bool)
    model_block = scores >= card.block_threshold if card.block_threshold is not None else none
    model_flag = scores >= card.threshold
    rule_actions = np.array(
        [
            max(
                (
                    severity[r.action]
                    for r in rules.fired(t, dict(zip(FEATURE_NAMES, row, strict=True)), model_down=False)
                ),
                default=0,
            )
            for t, row in zip(txns, stress_data.x.tolist(), strict=True)
        ]
    )
    by_source = {
        "model": (model_flag, model_block),
        "rules": (rule_actions >= 1, rule_actions == 2),
        "both": (model_flag | (rule_actions >= 1), model_block | (rule_actions == 2)),
    }
    fraud = stress_data.y == 1
    stress = card.metrics["stress"]
    assert stress["rules_version"] == rules.version and stress["frauds"] == int(fraud.sum()) > 0
    for source, (flag, block) in by_source.items():
        report = stress[source]
        for action, mask in (("REVIEW", flag & ~block), ("BLOCK", block), ("flagged", flag)):
            assert report[action]["payments"] == int(mask.sum()), (source, action)
            assert report[action]["frauds"] == int((mask & fraud).sum()), (source, action)
        assert report["flagged"]["recall"] == pytest.approx((flag & fraud).sum() / fraud.sum(), abs=1e-6)
        for kind in ("card_testing", "account_takeover", "merchant_burst", "impossible_travel"):
            mine = stress_data.fraud_type == kind
            assert mine.any(), kind
            assert report["per_fraud_type"][kind]["recall"] == pytest.approx(
                (flag & mine).sum() / mine.sum(), abs=1e-6
            )
    # The rules catch card testing on their own; together the sources flag more than either.
    assert stress["rules"]["per_fraud_type"]["card_testing"]["recall"] > 0
    assert by_source["both"][0].sum() > max(model_flag.sum(), (rule_actions >= 1).sum())
    # The ablation's stress figures are the refit without velocity features on the same set; what
    # velocity adds is the difference.
    adds = card.ablation["velocity_adds_on_stress"]["pr_auc"]
    assert adds == pytest.approx(stress["pr_auc"] - card.ablation["stress"]["pr_auc"], abs=1e-6)
    assert card.ablation["stress"]["both"]["flagged"]["frauds"] <= stress["frauds"]
    # One refit per feature group, each without exactly that group's features.
    groups = card.ablation_groups
    assert set(groups) == set(ABLATION_GROUPS)
    for group, entry in groups.items():
        assert entry["without"] == sorted(names_of(group)) and entry["without"]
        assert 0 <= entry["stress_pr_auc"] <= 1
        assert entry["stress_model_flagged"]["frauds"] <= stress["frauds"]
    # Without the user's velocity the model misses card testing it otherwise catches (stress set).
    assert groups["user_velocity"]["stress_pr_auc"] < stress["pr_auc"]


def test_reasons_equal_a_feature_by_feature_perturbation() -> None:
    """explain() re-scores only features away from their reference; the result is the one every
    feature re-scored one at a time gives (a linear margin: contribution = w_j (x_j - ref_j))."""
    rng = np.random.default_rng(3)
    n = len(FEATURE_NAMES)
    weights = rng.normal(0.0, 1.0, n)
    reference = rng.integers(0, 3, n).astype(np.float64)
    rows = np.where(rng.random((40, n)) < 0.5, reference, rng.integers(0, 5, (40, n))).astype(np.float64)
    scores = rng.random(40)

    def fake_margin(x: np.ndarray) -> np.ndarray:
        return np.asarray(x @ weights, dtype=np.float64)

    got = explain(fake_margin, rows, scores, reference, FEATURE_NAMES, min_score=0.3)
    for i in range(40):
        if scores[i] < 0.3:
            assert got[i] == []
            continue
        drops = [(weights[j] * (rows[i, j] - reference[j]), j) for j in range(n)]
        strongest = sorted(((-d, j) for d, j in drops), key=lambda t: t)[:3]
        want = [REASON_TEXT[FEATURE_NAMES[j]] for d, j in strongest if -d >= 0.05]
        assert got[i] == want, i
