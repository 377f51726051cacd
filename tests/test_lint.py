"""The code stays as STYLE.md asks: ruff clean and formatted, mypy --strict on the service."""

from __future__ import annotations

import subprocess
import sys

from deploy.local.stack import REPO_ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_check_and_format() -> None:
    check = _run("ruff", "check", ".")
    assert check.returncode == 0, check.stdout
    fmt = _run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_mypy() -> None:
    result = _run("mypy", "inference_service", "fraud_core")
    assert result.returncode == 0, result.stdout
