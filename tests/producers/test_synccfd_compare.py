"""The comparison on data we did not generate (examples/synccfd_compare.py): a small synccfd
history, our features and model against the raw-column baseline, figures written and printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # generates a history and trains two models: tens of seconds


def test_our_features_beat_the_raw_column_baseline_on_a_synccfd_history(tmp_path: Path) -> None:
    data = tmp_path / "synccfd.parquet"
    generate = [sys.executable, "examples/synccfd_generate.py", "--customers", "150", "--terminals", "300"]
    subprocess.run([*generate, "--days", "60", "--out", str(data)], check=True, capture_output=True)
    out = tmp_path / "compare.json"
    res = subprocess.run(
        [sys.executable, "examples/synccfd_compare.py", "--file", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    ours, baseline = figures["results"]
    assert figures["held_out"]["frauds"] > 0 and figures["held_out"]["events"] > 1000
    # The terminal-risk (late-label) and days-long features carry what the raw columns cannot.
    assert ours["average_precision"] > baseline["average_precision"]
    assert ours["average_precision"] > figures["ablation_groups"]["labels"]
    assert "ours / baseline" in res.stdout
