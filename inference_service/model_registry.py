"""Model versions on disk, the pointer to the live one, and hot reload.

Layout: ``<model_dir>/<version>/model.joblib`` and ``<model_dir>/<version>/card.json``; the text
file ``<model_dir>/LIVE`` names the live version and the optional ``<model_dir>/SHADOW`` a shadow
version. A version directory is written under a temporary name and renamed into place, and
pointers are replaced atomically, so a reader never sees half a model.

A model is loaded, checked against this code's feature definition, compiled, verified against its
own ``predict_proba`` and warmed on a background thread; only then is it swapped in, by replacing
one reference (:attr:`ModelRegistry.active`). A request reads that reference once and scores with
what it got, so every response names the version that actually scored it, and no request waits.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from fraud_core.feature_catalog import FEATURE_NAMES
from inference_service.compiled import CompiledModel, UnsupportedEstimatorError
from inference_service.exceptions import ModelRejectedError
from inference_service.metrics import Metrics
from inference_service.reasons import REASON_FRACTION, explain

log = logging.getLogger(__name__)

LIVE_POINTER = "LIVE"
SHADOW_POINTER = "SHADOW"
MODEL_FILE = "model.joblib"
CARD_FILE = "card.json"
_PROBE_ROWS = 256


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified, warmed model version, ready to score."""

    version: str
    card: dict[str, Any]
    estimator: Any
    compiled: CompiledModel
    threshold: float
    reference: npt.NDArray[np.float64]  # training medians in FEATURE_NAMES order
    block_threshold: float | None = None  # None: the card has none, the score alone never blocks

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """P(fraud) per row of ``x`` (columns in FEATURE_NAMES order)."""
        return self.compiled.predict(x)

    def reasons(self, x: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]) -> list[list[str]]:
        """Reason texts per row (see :mod:`inference_service.reasons`)."""
        return explain(
            self.compiled.raw, x, scores, self.reference, FEATURE_NAMES, REASON_FRACTION * self.threshold
        )


@dataclass(frozen=True, slots=True)
class ActiveModels:
    """What serves requests right now: the live model and optionally a shadow."""

    live: LoadedModel
    shadow: LoadedModel | None


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


def save_version(model_dir: Path, version: str, estimator: Any, card: dict[str, Any]) -> Path:
    """Write a model version directory (replacing an existing one of the same version)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}."))
    joblib.dump(estimator, staging / MODEL_FILE)
    (staging / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    target = model_dir / version
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def load_model(model_dir: Path, version: str) -> LoadedModel:
    """Load, check, compile, verify and warm one version.

    Raises:
        ModelRejectedError: the files are missing or unreadable, the card's feature list is not
            :data:`FEATURE_NAMES`, the estimator expects a different number of features, or the
            compiled predictor disagrees with the estimator.
    """
    folder = model_dir / version
    if not version or "/" in version or version.startswith("."):
        raise ModelRejectedError(version, "not a valid version name")
    try:
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelRejectedError(version, f"cannot read {folder / CARD_FILE}: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelRejectedError(version, f"{folder / CARD_FILE} is not a JSON object")
    if card.get("version") != version:
        raise ModelRejectedError(
            version, f"card names version {card.get('version')!r}, directory is {version!r}"
        )
    features = card.get("features")
    if features != list(FEATURE_NAMES):
        raise ModelRejectedError(
            version,
            f"card features {features!r} do not match this service's FEATURE_NAMES {list(FEATURE_NAMES)!r}; "
            "retrain with the current fraud_core.features or deploy the matching service",
        )
    threshold = card.get("threshold")
    if not isinstance(threshold, float) or not 0.0 < threshold < 1.0:
        raise ModelRejectedError(version, f"card threshold {threshold!r} is not a probability in (0, 1)")
    block = card.get("block_threshold")
    if block is not None and not (isinstance(block, float) and threshold <= block <= 1.0):
        raise ModelRejectedError(
            version, f"card block_threshold {block!r} must be null or a probability in [threshold, 1]"
        )
    ref = card.get("reference_values")
    if not isinstance(ref, dict) or set(ref) != set(FEATURE_NAMES):
        raise ModelRejectedError(version, "card reference_values must give a value for every feature")
    reference = np.array([float(ref[n]) for n in FEATURE_NAMES], dtype=np.float64)
    try:
        estimator = joblib.load(folder / MODEL_FILE)
    except Exception as exc:  # unpickling can raise anything; all of it means "unusable file"
        raise ModelRejectedError(version, f"cannot load {folder / MODEL_FILE}: {exc!r}") from exc
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in != len(FEATURE_NAMES):
        raise ModelRejectedError(
            version, f"estimator expects {n_in} features, FEATURE_NAMES has {len(FEATURE_NAMES)}"
        )
    try:
        compiled = CompiledModel.from_estimator(estimator)
    except UnsupportedEstimatorError as exc:
        raise ModelRejectedError(version, str(exc)) from exc
    model = LoadedModel(version, card, estimator, compiled, threshold, reference, block)
    _verify_and_warm(model)
    return model


def _verify_and_warm(model: LoadedModel) -> None:
    """Score probe rows around the reference values both ways; also warms every code path."""
    rng = np.random.default_rng(0)
    scale = np.maximum(np.abs(model.reference), 1.0)
    probe = np.abs(model.reference + rng.normal(0.0, 1.0, (_PROBE_ROWS, len(FEATURE_NAMES))) * scale * 2)
    expected = np.asarray(model.estimator.predict_proba(probe)[:, 1], dtype=np.float64)
    got = model.predict(probe)
    if not np.allclose(got, expected, rtol=0.0, atol=1e-9):
        worst = float(np.abs(got - expected).max())
        raise ModelRejectedError(model.version, f"compiled predictor disagrees with predict_proba by {worst}")
    for n in (1, 64, _PROBE_ROWS):
        model.reasons(probe[:n], got[:n])


class ModelRegistry:
    """Follows the LIVE/SHADOW pointers of ``model_dir`` and holds the models being served.

    Args:
        model_dir: the registry folder.
        shadow_override: a shadow version that wins over the SHADOW file (``SHADOW_MODEL_VERSION``).
        metrics: where reload outcomes are counted.
    """

    def __init__(self, model_dir: Path, shadow_override: str | None, metrics: Metrics) -> None:
        self.model_dir = model_dir
        self.shadow_override = shadow_override
        self.metrics = metrics
        self.active: ActiveModels | None = None
        self._lock = threading.Lock()
        self._refused: dict[str, tuple[float, ...]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload(self, force: bool = False) -> bool:
        """Bring the served models in line with the pointers; True when anything changed.

        A version that is refused is logged and counted once (again only if its files change or
        ``force`` is set); whatever was serving keeps serving.
        """
        with self._lock:
            current = self.active
            live_version = read_pointer(self.model_dir, LIVE_POINTER)
            shadow_version = self.shadow_override or read_pointer(self.model_dir, SHADOW_POINTER)
            live = self._resolve("live", live_version, current.live if current else None, force)
            shadow = self._resolve("shadow", shadow_version, current.shadow if current else None, force)
            if live is None:
                return False
            if shadow_version is None:
                shadow = None
            if current is not None and current.live is live and current.shadow is shadow:
                return False
            self.active = ActiveModels(live, shadow)
            self.metrics.model_info.clear()
            self.metrics.model_info.labels("live", live.version).set(1)
            if shadow is not None:
                self.metrics.model_info.labels("shadow", shadow.version).set(1)
            log.info(
                "serving models",
                extra={"live_version": live.version, "shadow_version": shadow.version if shadow else None},
            )
            return True

    def _resolve(
        self, role: str, version: str | None, current: LoadedModel | None, force: bool
    ) -> LoadedModel | None:
        if version is None or (current is not None and current.version == version):
            return current
        signature = self._signature(version)
        if not force and self._refused.get(version) == signature:
            return current
        try:
            model = load_model(self.model_dir, version)
        except ModelRejectedError as exc:
            self._refused[version] = signature
            self.metrics.reloads.labels(role, "refused").inc()
            log.error(
                "model refused; keeping the current one",
                extra={
                    "role": role,
                    "refused_version": version,
                    "reason": exc.reason,
                    "serving_version": current.version if current else None,
                },
            )
            return current
        self._refused.pop(version, None)
        self.metrics.reloads.labels(role, "ok").inc()
        log.info("model loaded", extra={"role": role, "model_version": version})
        return model

    def _signature(self, version: str) -> tuple[float, ...]:
        folder = self.model_dir / version
        out: list[float] = []
        for name in (CARD_FILE, MODEL_FILE):
            try:
                out.append((folder / name).stat().st_mtime)
            except OSError:
                out.append(-1.0)
        return tuple(out)

    def start(self, poll_seconds: float) -> None:
        """Start the background thread that follows the pointers every ``poll_seconds``."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch, args=(poll_seconds,), name="model-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.reload()
            except Exception:  # the watcher must survive anything a broken registry folder throws
                log.exception("model watch failed; retrying at the next poll")
