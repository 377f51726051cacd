"""The model folder's layout, owned here and nowhere else.

``<model_dir>/<version>/model.joblib`` (the estimator) and ``<model_dir>/<version>/card.json``
(:class:`fraud_core.model_card.ModelCard`); the text file ``<model_dir>/LIVE`` names the live
version and the optional ``<model_dir>/SHADOW`` a shadow version. A version directory is written
under a temporary name and renamed into place, and pointers are replaced atomically, so a reader
never sees half a model. Training writes it, the scoring service follows it, and the monitor, the
backtest, the bench and the fault rig read it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import joblib
from pydantic import ValidationError

from fraud_core.exceptions import FraudPipelineError
from fraud_core.model_card import ModelCard

LIVE_POINTER = "LIVE"
SHADOW_POINTER = "SHADOW"
MODEL_FILE = "model.joblib"
CARD_FILE = "card.json"


class UnreadableCard(FraudPipelineError):
    """A version's card is missing, not JSON, or not a valid model card; the message names the
    file and, for an invalid card, each field and value that is wrong."""

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"model {version}: {reason}")
        self.version = version
        self.reason = reason


def valid_version_name(version: str) -> bool:
    """Whether ``version`` can name a folder of the registry (no path tricks, no hidden names)."""
    return bool(version) and "/" not in version and not version.startswith(".")


def card_path(model_dir: Path, version: str) -> Path:
    return model_dir / version / CARD_FILE


def model_path(model_dir: Path, version: str) -> Path:
    return model_dir / version / MODEL_FILE


def is_version(folder: Path) -> bool:
    """Whether ``folder`` holds a complete model version (card and estimator)."""
    return (folder / CARD_FILE).is_file() and (folder / MODEL_FILE).is_file()


def read_pointer(model_dir: Path, name: str) -> str | None:
    """The version a pointer file names, or None when the file is absent or empty."""
    try:
        text = (model_dir / name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def write_pointer(model_dir: Path, name: str, version: str) -> None:
    """Point ``name`` (LIVE or SHADOW) at ``version``, atomically."""
    model_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=f".{name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
    os.replace(tmp, model_dir / name)


def card_from_json(text: str | bytes, version: str, where: str) -> ModelCard:
    """A card from its JSON text (``where`` names the file or URL in errors).

    Raises:
        UnreadableCard: not JSON, or not a valid card (each wrong field named with its value).
    """
    try:
        return ModelCard.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(card)'}: {e['msg']} (got {_short(e.get('input'))})"
            for e in exc.errors()
        )
        raise UnreadableCard(version, f"{where} is not a valid model card: {problems}") from exc


def read_card(model_dir: Path, version: str) -> ModelCard:
    """The card of ``version``.

    Raises:
        FileNotFoundError: the version has no card.
        UnreadableCard: the card cannot be read or is not a valid card.
    """
    path = card_path(model_dir, version)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableCard(version, f"cannot read {path}: {exc}") from exc
    return card_from_json(text, version, str(path))


def save_version(model_dir: Path, estimator: Any, card: ModelCard) -> Path:
    """Write a model version directory named after ``card.version`` (replacing an existing one)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{card.version}."))
    joblib.dump(estimator, staging / MODEL_FILE)
    text = json.dumps(card.to_json(), indent=2, sort_keys=False) + "\n"
    (staging / CARD_FILE).write_text(text, encoding="utf-8")
    target = model_dir / card.version
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def load_estimator(model_dir: Path, version: str) -> Any:
    """The estimator of ``version`` (unpickled: only from a registry folder this project wrote)."""
    return joblib.load(model_path(model_dir, version))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
