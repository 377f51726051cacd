"""A labelled history we did not generate (synccfd), the whole way a fraud team takes it, through
the commands' own entry points: ``make import``, ``make model --from-topics --until T``, then
``make backtest --from T --to T2 --export`` through the real job. (``make retrain`` on top of this
path is ``test_retrain_run.py``; our figures next to a raw-column baseline: examples/synccfd_compare.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import schemas
from deploy.local.stack import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.flink]

START = datetime(2025, 1, 1, tzinfo=UTC)


def _run(cmd: list[str], timeout: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.timeout(1500)
def test_import_train_from_topics_and_backtest_a_synccfd_history(
    stack: Any, make_topic: Any, model_dir: Path, tmp_path: Path
) -> None:
    history = tmp_path / "synccfd.parquet"
    # 6,889 payments, 806 of the 1,450 in the backtest's range fraudulent: no assertion needs more,
    # and every job run replays the whole history (its warm-up is the import's few seconds of Kafka
    # time), three times here (120 customers: 10,188 payments).
    generate = [sys.executable, "examples/synccfd_generate.py", "--customers", "80", "--terminals", "160"]
    generate += ["--days", "45", "--start-date", START.date().isoformat(), "--out", str(history)]
    _run(generate, 300)
    rows = pq.read_table(history).num_rows
    topic = make_topic("history", 2, schemas.TRANSACTION)
    labels = make_topic("history-labels", 2, schemas.LABEL)
    connection = ["--bootstrap-servers", stack.bootstrap, "--registry-url", stack.registry_url]
    env = {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, "SCHEMA_REGISTRY_URL": stack.registry_url}

    command = [sys.executable, "-m", "producers.importer", "--file", str(history), "--no-progress"]
    command += ["--mapping", "examples/synccfd.toml", "--topic", topic, "--labels-topic", labels, *connection]
    imported = _run(command, 600)
    read = {line.split()[0]: line.split() for line in imported.stdout.splitlines() if line.strip()}
    assert int(read["rows"][2]) == rows and int(read["published"][1]) + int(read["rejected"][1]) == rows

    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    until = START + timedelta(days=35)
    command = [sys.executable, "-m", "inference_service.training", "--from-topics"]
    command += [
        "--until",
        until.isoformat(),
        "--topic",
        topic,
        "--labels-topic",
        labels,
        "--model-dir",
        str(models),
    ]
    trained = _run(command, 900, env)
    version = (models / "LIVE").read_text().strip()
    card = json.loads((models / version / "card.json").read_text())
    source = json.dumps(card["training_data"]["source"])
    assert topic in source and labels in source, source
    assert version in trained.stdout + trained.stderr

    export = tmp_path / "backtest.parquet"
    live = [make_topic(f"live-{kind}", 1, schemas.DECISION) for kind in ("flagged", "approved")]
    frm, to = until.isoformat(), (START + timedelta(days=45)).isoformat()
    command = [sys.executable, "-m", "backtest", "--bootstrap-servers", stack.bootstrap]
    command += ["--registry-url", stack.registry_url, "--redis-url", stack.redis_url, "--topic", topic]
    command += ["--labels-topic", labels, "--model-dir", str(models), "--from", frm, "--to", to]
    command += ["--export", str(export), "--out", str(tmp_path / "out"), "--enrichment", "none"]
    command += ["--live-flagged-topic", live[0], "--live-approved-topic", live[1]]
    _run(command, 900)
    table = pq.read_table(export).to_pylist()
    lo, hi = until.timestamp() * 1000, (START + timedelta(days=45)).timestamp() * 1000
    times = [r["event_time"] for r in table]
    assert table and all(lo <= t.timestamp() * 1000 < hi for t in times)
    assert {r["model_version"] for r in table} == {version}
    assert sum(1 for r in table if r["is_fraud"]) > 0
    (metrics_file,) = (tmp_path / "out").glob("*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    text = json.dumps(metrics)
    assert "roc_auc" in text and "card_precision_at_k" in text

    # make retrain: a challenger from the last 30 days up to day 45, against the live model above.
    command = [sys.executable, "-m", "backtest.retrain", "--until", to, "--window-days", "30"]
    command += ["--topic", topic, "--labels-topic", labels, "--model-dir", str(models)]
    command += ["--out", str(tmp_path / "retrain"), "--KAFKA-BOOTSTRAP-SERVERS", stack.bootstrap]
    command += ["--SCHEMA-REGISTRY-URL", stack.registry_url, "--REDIS-URL", stack.redis_url]
    retrained = _run(command, 900, {"APP_ENV": "test"})
    (comparison_file,) = (models / "comparisons").glob("*.json")
    comparison = json.loads(comparison_file.read_text())
    assert version in json.dumps(comparison) and "card_precision_at_k" in json.dumps(comparison)
    assert "challenger" in retrained.stdout
