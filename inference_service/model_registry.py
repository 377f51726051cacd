"""Model versions on disk, the pointer to the live one, and hot reload.

The folder's layout (versions, ``card.json``, the LIVE and SHADOW pointers, atomic writes) is
:mod:`fraud_core.model_folder`'s; the card is a :class:`fraud_core.model_card.ModelCard`.

A model is loaded, checked against this code's feature definition, compiled, verified against its
own ``predict_proba`` and warmed on a background thread; only then is it swapped in, by replacing
one reference (:attr:`ModelRegistry.active`). A request reads that reference once and scores with
what it got, so every response names the version that actually scored it, and no request waits.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.model_card import ModelCard
from fraud_core.model_folder import (
    CARD_FILE,
    LIVE_POINTER,
    MODEL_FILE,
    SHADOW_POINTER,
    UnreadableCard,
    card_path,
    load_estimator,
    read_card,
    read_pointer,
    valid_version_name,
)
from inference_service.compiled import CompiledModel, UnsupportedEstimatorError
from inference_service.exceptions import ModelRejectedError
from inference_service.metrics import Metrics
from inference_service.reasons import REASON_FRACTION, explain

log = logging.getLogger(__name__)

_PROBE_ROWS = 256


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified, warmed model version, ready to score."""

    version: str
    model_card: ModelCard
    estimator: Any
    compiled: CompiledModel
    threshold: float
    reference: npt.NDArray[np.float64]  # training medians in FEATURE_NAMES order
    block_threshold: float | None = None  # None: the card has none, the score alone never blocks

    @property
    def card(self) -> dict[str, Any]:
        """The card as ``GET /v1/model`` serves it (the JSON of ``card.json``)."""
        return self.model_card.to_json()

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


def load_model(model_dir: Path, version: str) -> LoadedModel:
    """Load, check, compile, verify and warm one version.

    Raises:
        ModelRejectedError: the files are missing or unreadable, the card's feature list is not
            :data:`FEATURE_NAMES`, the estimator expects a different number of features, or the
            compiled predictor disagrees with the estimator.
    """
    if not valid_version_name(version):
        raise ModelRejectedError(version, "not a valid version name")
    try:
        card = read_card(model_dir, version)
    except FileNotFoundError as exc:
        raise ModelRejectedError(version, f"cannot read {card_path(model_dir, version)}: {exc}") from exc
    except UnreadableCard as exc:
        raise ModelRejectedError(version, exc.reason) from exc
    if card.version != version:
        raise ModelRejectedError(version, f"card names version {card.version!r}, directory is {version!r}")
    if card.features != list(FEATURE_NAMES):
        raise ModelRejectedError(
            version,
            f"card features {card.features!r} do not match this service's FEATURE_NAMES {list(FEATURE_NAMES)!r}; "
            "retrain with the current fraud_core.features or deploy the matching service",
        )
    if set(card.reference_values) != set(FEATURE_NAMES):
        raise ModelRejectedError(version, "card reference_values must give a value for every feature")
    reference = np.array([card.reference_values[n] for n in FEATURE_NAMES], dtype=np.float64)
    try:
        estimator = load_estimator(model_dir, version)
    except Exception as exc:  # unpickling can raise anything; all of it means "unusable file"
        raise ModelRejectedError(version, f"cannot load {model_dir / version / MODEL_FILE}: {exc!r}") from exc
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in != len(FEATURE_NAMES):
        raise ModelRejectedError(
            version, f"estimator expects {n_in} features, FEATURE_NAMES has {len(FEATURE_NAMES)}"
        )
    try:
        compiled = CompiledModel.from_estimator(estimator)
    except UnsupportedEstimatorError as exc:
        raise ModelRejectedError(version, str(exc)) from exc
    model = LoadedModel(version, card, estimator, compiled, card.threshold, reference, card.block_threshold)
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
