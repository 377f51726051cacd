"""Fixtures of the backtest tests: the job fixtures of tests/flink_jobs, and a copy of the session
model registry with a second model version trained into it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.stack import REPO_ROOT


@pytest.fixture(scope="session")
def two_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(registry folder, live version, second version): the session model plus one trained with seed 8."""
    directory = tmp_path_factory.mktemp("bt-models") / "models"
    shutil.copytree(model_dir, directory)
    live = (directory / "LIVE").read_text().strip()
    before = {p.name for p in directory.iterdir() if p.is_dir()}
    cmd = [sys.executable, "-m", "inference_service.training.train", "--seed", "8", "--events", "30000"]
    cmd += ["--model-dir", str(directory), "--no-promote"]
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True)
    (second,) = {p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")} - before
    return directory, live, second
