"""Model versions for a backtest: checked against the registry folder, each served by a private
scoring service whose ``MODEL_DIR`` holds only that version (as ``LIVE``), on a free port.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backtest.exceptions import BadInputError, UnknownModelError
from deploy.local.processes import start_scoring_service
from deploy.local.stack import free_port
from fraud_core.exceptions import StackError
from fraud_core.model_card import ModelCard
from fraud_core.model_folder import LIVE_POINTER, is_version, read_card, read_pointer, write_pointer


@dataclass(frozen=True, slots=True)
class ModelInfo:
    version: str
    threshold: float
    card: ModelCard | None  # None: a name only (topic names of a run)

    @property
    def slug(self) -> str:
        """The version as it may appear in a topic name."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.version)


def available(model_dir: Path) -> list[str]:
    """Versions present in ``model_dir`` (folders holding a model and a card)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        p.name for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and is_version(p)
    )


def live_version(model_dir: Path) -> str | None:
    """The version ``model_dir/LIVE`` names, if any."""
    return read_pointer(model_dir, LIVE_POINTER)


def resolve_models(model_dir: Path, requested: list[str]) -> list[ModelInfo]:
    """The requested versions (default: the live one), each checked to exist, in the order given.

    Raises:
        UnknownModelError: a version is not in ``model_dir`` (the message lists those that are).
        BadInputError: no version requested and ``model_dir`` has no LIVE pointer.
    """
    versions = list(dict.fromkeys(v.strip() for v in requested if v.strip()))
    if not versions:
        live = live_version(model_dir)
        if live is None:
            raise BadInputError(f"no --models given and {model_dir / LIVE_POINTER} does not exist")
        versions = [live]
    present = available(model_dir)
    out = []
    for version in versions:
        if version not in present:
            raise UnknownModelError(
                f"unknown model version {version!r} in {model_dir}; available: {', '.join(present) or 'none'}"
            )
        card = read_card(model_dir, version)
        out.append(ModelInfo(version, card.threshold, card))
    return out


@dataclass(frozen=True, slots=True)
class PrivateService:
    url: str
    api_key: str
    log_path: Path


@contextmanager
def serve(model_dir: Path, model: ModelInfo, work_dir: Path) -> Iterator[PrivateService]:
    """A scoring service for ``model`` alone, stopped on exit.

    Raises:
        StackError: the service did not become ready (its log is named in the message).
    """
    private = work_dir / f"models-{model.slug}"
    private.mkdir(parents=True, exist_ok=True)
    link = private / model.version
    if not link.exists():
        link.symlink_to((model_dir / model.version).resolve(), target_is_directory=True)
    write_pointer(private, LIVE_POINTER, model.version)
    api_key = "backtest-" + secrets.token_hex(16)
    port = free_port()
    log_path = work_dir / f"scoring-{model.slug}.log"
    try:
        # Its own admin key too: outside local mode the service refuses to start without one.
        extra = {"SHADOW_MODEL_VERSION": "", "ADMIN_API_KEY": "backtest-admin-" + secrets.token_hex(16)}
        service = start_scoring_service(private, port, log_path, api_key, extra)
    except StackError as exc:
        raise StackError(f"scoring service for model {model.version} did not start: {exc}") from exc
    try:
        yield PrivateService(f"http://127.0.0.1:{port}", api_key, log_path)
    finally:
        service.stop(timeout_s=10)
