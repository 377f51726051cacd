"""Unit tests of the drift monitor's card source, gauges and CLI. No processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from deploy.local.stack import free_port
from fraud_core.cli import help_text
from fraud_core.drift_reference import reference_section
from fraud_core.feature_catalog import FEATURE_NAMES
from monitoring.__main__ import MonitorCli, main
from monitoring.exceptions import InvalidReference
from monitoring.metrics import Metrics
from monitoring.monitor import CardSource, publish
from monitoring.settings import MonitorSettings
from monitoring.tracker import DriftTracker


def _write_card(model_dir: Path, version: str) -> None:
    rng = np.random.default_rng(0)
    features = {n: rng.integers(0, 3, 500).astype(float) for n in FEATURE_NAMES}
    card = {
        "version": version,
        "features": list(FEATURE_NAMES),
        "threshold": 0.5,
        "reference_values": dict.fromkeys(FEATURE_NAMES, 1.0),
        "drift_reference": reference_section(features, rng.random(500), "training", "held-out"),
        "metrics": {"held_out": {"flag_rate": 0.04}},
    }
    (model_dir / version).mkdir(parents=True)
    (model_dir / version / "card.json").write_text(json.dumps(card))


def test_cards_come_from_the_model_folder_and_a_missing_one_is_named(tmp_path: Path) -> None:
    _write_card(tmp_path, "m1")
    source = CardSource(tmp_path, f"http://127.0.0.1:{free_port()}", "key", timeout_s=1)
    assert source.reference("m1").version == "m1"
    with pytest.raises(InvalidReference, match=r"m2.*no card in") as err:
        source.reference("m2")  # not in the folder, and no service answers
    assert err.value.version == "m2"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "card.json").write_text("{not json")
    with pytest.raises(InvalidReference, match="cannot read"):
        source.reference("broken")


def test_without_an_api_key_only_the_model_folder_is_asked(tmp_path: Path) -> None:
    settings = MonitorSettings(APP_ENV="production", MODEL_DIR=tmp_path)
    assert settings.api_key is None  # on Kubernetes the monitor gets no key
    source = CardSource(settings.MODEL_DIR, settings.SCORING_URL, settings.api_key)
    with pytest.raises(InvalidReference, match="no SCORING_API_KEY"):
        source.reference("m9")
    assert MonitorSettings(APP_ENV="local").api_key is not None


def test_gauges_carry_the_contract_names_and_labels(tmp_path: Path) -> None:
    _write_card(tmp_path, "m1")
    source = CardSource(tmp_path, "http://127.0.0.1:9", "key")
    tracker = DriftTracker(FEATURE_NAMES, 100, source.reference, label_delay_ms=0)
    decision = {
        "model_version": "m1",
        "features": dict.fromkeys(FEATURE_NAMES, 9.0),
        "score": 0.9,
        "decision": "FLAGGED",
        "event_time": 1_767_225_600_000,
    }
    tracker.observe([decision] * 100)
    metrics = Metrics()
    publish(metrics, tracker.readings(min_events=100), {"m1": tracker.warming("m1")})
    text = generate_latest(metrics.registry).decode()
    assert 'fraud_feature_psi{feature="amount_eur",model_version="m1"}' in text
    assert 'fraud_score_psi{model_version="m1"}' in text
    assert 'fraud_flag_rate{model_version="m1"} 1.0' in text
    assert 'fraud_flag_rate_reference{model_version="m1"} 0.04' in text
    assert 'fraud_missing_profile_rate{model_version="m1"} 1.0' in text


def test_cli_documents_every_setting_and_refuses_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(MonitorCli)
    for flag in ("--drift-window", "--model-dir", "--monitor-metrics-port", "--flagged-topic"):
        assert flag in text
    assert "--redis-url" not in text.lower()  # unused by the monitor
    assert "(default: 2000)" in " ".join(text.split()[text.split().index("--drift-window") :])
    with pytest.raises(SystemExit) as exit_:
        main(["--drift-window", "5"])
    assert exit_.value.code == 2
    assert "--drift-window" in capsys.readouterr().err
