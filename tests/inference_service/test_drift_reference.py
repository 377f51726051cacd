"""The model card's drift reference, written by the real trainer: every feature binned on the
training period, the score on the held-out period, with the bins stated. No processes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fraud_core.drift_reference import SCORE, bin_values
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.simulator import SimConfig, Simulator
from inference_service.model_registry import CARD_FILE, load_model
from inference_service.training.train import TrainConfig, replay, split_by_time
from monitoring.reference import parse_card
from tests.services import SMALL_EVENTS, SMALL_USERS, Registry


def test_card_bins_every_feature_on_the_training_period_and_the_score_on_the_held_out(
    registry: Registry,
) -> None:
    # The SHADOW version: trained in-process by train_small, on a stream this test can replay.
    card = json.loads((registry.path / registry.shadow / CARD_FILE).read_text())
    section = card["drift_reference"]
    assert "right-closed" in section["scheme"] and "quantile" in section["scheme"]
    assert set(section["bins"]) == {*FEATURE_NAMES, SCORE}
    sim = Simulator(SimConfig(seed=8, n_users=SMALL_USERS))  # what train_small trained it on
    train, _cal, held_out = split_by_time(
        replay(sim.events(count=SMALL_EVENTS), sim.profiles()), TrainConfig(seed=8)
    )
    for i, name in enumerate(FEATURE_NAMES):
        expected = bin_values(train.x[:, i])
        written = section["bins"][name]
        assert written["edges"] == expected.edges.tolist(), name
        assert written["proportions"] == pytest.approx(expected.proportions.tolist(), abs=1e-9), name
        assert "training" in written["source"]
    model = load_model(registry.path, registry.shadow)
    expected_score = bin_values(model.estimator.predict_proba(held_out.x)[:, 1])
    assert section["bins"][SCORE]["edges"] == pytest.approx(expected_score.edges.tolist())
    reference = parse_card(card, FEATURE_NAMES)
    assert np.isclose(reference.score.proportions.sum(), 1.0)
    assert reference.flag_rate == card["metrics"]["held_out"]["flag_rate"]
