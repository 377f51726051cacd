"""Fixtures of the backtest tests: the job fixtures of tests/flink_jobs, and a copy of the session
model registry's two versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import Registry, registry_copy


@pytest.fixture(scope="session")
def two_model_dir(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(registry folder, live version, second version): a copy of the session registry's LIVE and
    SHADOW versions, LIVE pointing at the first (nothing trained here)."""
    directory = tmp_path_factory.mktemp("bt-models") / "models"
    registry_copy(registry, directory, [registry.live, registry.shadow])
    return directory, registry.live, registry.shadow
