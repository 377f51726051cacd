"""The typed model card and the model folder's layout: what training writes is read back
unchanged, byte for byte, and a bad card is refused naming the field and the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.model_card import ModelCard
from fraud_core.model_folder import (
    CARD_FILE,
    LIVE_POINTER,
    MODEL_FILE,
    UnreadableCard,
    is_version,
    read_card,
    read_pointer,
    save_version,
    write_pointer,
)


def _card(**changes: Any) -> dict[str, Any]:
    """A card as training writes one (fields in its order), with a field no reader knows yet."""
    period = {"events": 10, "frauds": 1, "from_event_time": 0, "to_event_time": 9}
    card: dict[str, Any] = {
        "version": "hgb-000000000001",
        "model_type": "HistGradientBoostingClassifier + one isotonic calibrator",
        "features": list(FEATURE_NAMES),
        "threshold": 0.25,
        "block_threshold": 0.875,
        "threshold_rationale": "cost",
        "business_cost": {"review_eur_per_flag": 5.0},
        "training_data": {
            "fingerprint_sha256": "ab" * 32,
            "source": {"generator": "simulator", "seed": 7},
            "events": 30,
            "fraud_rate": 0.1,
            "split": {"train": period, "calibration": period, "held_out": {**period, "note": "kept"}},
        },
        "hyperparameters": {"seed": 7, "cost": {"review_cost_eur": 5.0}},
        "libraries": {"python": "3.11.7"},
        "reference_values": dict.fromkeys(FEATURE_NAMES, 0.5),
        "drift_reference": {"scheme": "s", "bins": {}},
        "metrics": {"held_out": {"flag_rate": 0.04, "pr_auc": 0.8}},
        "ablation": {"without": ["x"]},
        "ablation_groups": {"user_velocity": {"held_out_pr_auc": 0.7}},
        "added_later": {"any": [1, 2]},
    }
    card.update(changes)
    return card


def _write(folder: Path, card: dict[str, Any]) -> None:
    (folder / card["version"]).mkdir(parents=True)
    (folder / card["version"] / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


def test_a_card_reads_typed_and_writes_back_byte_for_byte(tmp_path: Path) -> None:
    written = _card()
    _write(tmp_path / "a", written)
    card = read_card(tmp_path / "a", written["version"])
    assert card.threshold == 0.25 and card.block_threshold == 0.875
    assert card.training_data is not None and card.training_data.split.held_out.to_event_time == 9
    assert card.held_out_flag_rate == 0.04
    save_version(tmp_path / "b", {"an": "estimator"}, card)
    folder = tmp_path / "b" / written["version"]
    assert (folder / CARD_FILE).read_text() == json.dumps(written, indent=2) + "\n"
    assert is_version(folder) and (folder / MODEL_FILE).is_file()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"threshold": "0.25"}, "threshold: Input should be a valid number (got '0.25')"),
        ({"threshold": 1.0}, "threshold: Input should be less than 1 (got 1.0)"),
        ({"block_threshold": 0.125}, "block_threshold 0.125 must be null or a probability in [threshold, 1]"),
        (
            {"reference_values": {"amount_eur": "high"}},
            "reference_values.amount_eur: Input should be a valid",
        ),
        ({"training_data": {"events": 3}}, "training_data.fingerprint_sha256: Field required"),
    ],
)
def test_a_bad_card_is_refused_naming_the_field_and_the_value(
    tmp_path: Path, changes: dict[str, Any], named: str
) -> None:
    _write(tmp_path, _card(**changes))
    with pytest.raises(UnreadableCard, match=r"card\.json is not a valid model card") as err:
        read_card(tmp_path, "hgb-000000000001")
    assert named in str(err.value)
    assert err.value.version == "hgb-000000000001"


def test_a_missing_card_is_not_found_and_a_broken_one_unreadable(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_card(tmp_path, "nope")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / CARD_FILE).write_text("{not json")
    with pytest.raises(UnreadableCard, match="Invalid JSON"):
        read_card(tmp_path, "broken")


def test_pointers_name_a_version_or_nothing(tmp_path: Path) -> None:
    assert read_pointer(tmp_path, LIVE_POINTER) is None
    write_pointer(tmp_path, LIVE_POINTER, "v1")
    assert (tmp_path / "LIVE").read_text() == "v1\n"
    assert read_pointer(tmp_path, LIVE_POINTER) == "v1"
    (tmp_path / "LIVE").write_text("  \n")
    assert read_pointer(tmp_path, LIVE_POINTER) is None


def test_the_card_type_keeps_fields_it_does_not_know() -> None:
    card = ModelCard.model_validate(_card())
    assert card.to_json()["added_later"] == {"any": [1, 2]}
    assert list(card.to_json())[-1] == "added_later"
