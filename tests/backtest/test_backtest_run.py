"""The backtest end to end on the real stack: a "live" topic set is scored by the live job, then
``python -m backtest`` replays part of it with the live model and a second model.

Checks: parity with the live decisions, isolation of the live topics, groups and Redis during the
run, metrics equal to an independent computation, the report files, and bad inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from sklearn.metrics import average_precision_score, roc_auc_score

import schemas
from backtest.cli import main as backtest_main
from backtest.replay import JOB_OVERRIDES
from deploy.local.stack import REPO_ROOT
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka.readers import read_range
from fraud_core.kafka_io import AvroPublisher, consumer, decoder, end_offsets, partition_bounds, read_until
from fraud_core.reference import to_eur
from fraud_core.simulator import SimConfig, Simulator
from producers.profiles import seed_profiles

pytestmark = [pytest.mark.integration, pytest.mark.flink]

N_EVENTS = 2000
LIVE_GROUP = f"live-scoring-{uuid.uuid4().hex[:6]}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def backtest(args: list[str], stack: Any, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "backtest", "--bootstrap-servers", stack.bootstrap]
    cmd += ["--registry-url", stack.registry_url, "--redis-url", stack.redis_url, *args]
    return subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env={**os.environ, "APP_ENV": "test", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return [
            tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        ]
    finally:
        c.close()


def redis_state(url: str) -> dict[bytes, tuple[bytes | None, bool]]:
    """Every key: its DUMP and whether it has a time to live. One pipelined round trip, not two a
    key: sampled every few seconds beside the backtest, on the same two cores."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(count=1000))
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.dump(k)
            pipe.ttl(k)
        values = pipe.execute()
        return {k: (d, t != -1) for k, d, t in zip(keys, values[::2], values[1::2], strict=True)}
    finally:
        client.close()


@pytest.fixture(scope="module")
def live(stack, job_topics, run_job, make_topic) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A live input topic with labels, scored by the live job (bounded) under a live group."""
    topics = job_topics()
    labels_topic = make_topic("labels", 4, schemas.LABEL)
    simulator = Simulator(SimConfig(seed=21, n_users=300, rate_eps=25.0))
    seed_profiles(stack.redis_url, simulator.profiles())
    events = list(simulator.events(count=N_EVENTS))
    blocked_card = events[-5].txn.card_id
    redis.Redis.from_url(stack.redis_url).set(f"blocklist:card:{blocked_card}", b"1", ex=86400)
    publisher = AvroPublisher(stack.bootstrap, stack.registry_url)
    for e in events:
        publisher.send(topics.input, schemas.TRANSACTION, e.txn.user_id, e.txn.to_record(), new_headers())
        publisher.send(labels_topic, schemas.LABEL, e.txn.user_id, e.label_record(), new_headers())
    for key in ("u-garbage-1", "u-garbage-2"):
        publisher.send_raw(topics.input, key.encode(), b"not avro", new_headers())
    publisher.flush()
    t0 = time.monotonic()
    # Generous timeouts, as the backtest uses: on a busy 2-core machine the default 200 ms Redis
    # timeout degrades some live decisions, which the parity check would (rightly) report.
    job = run_job(topics, group_id=LIVE_GROUP, env={"STOP_AT": "latest", **JOB_OVERRIDES})
    assert job.proc.wait(timeout=600) == 0, job.tail(60)
    live_wall = time.monotonic() - t0
    # The job has exited: everything it wrote is below the end offsets, so read up to them (no idle
    # wait for stragglers).
    out = read_range(
        consumer(stack.bootstrap),
        decoder(stack.registry_url),
        partition_bounds(stack.bootstrap, topics.outputs),
    )
    assert len(out) >= N_EVENTS + 2
    written = [record for topic, _p, _o, record in out if record and topic != topics.dlq]
    decisions = {r["event_id"]: r for r in written}
    assert len(decisions) == N_EVENTS
    assert not any(d["degraded"] for d in decisions.values())
    stamps = [r["decided_at"].timestamp() * 1000 for r in written]
    return {
        "topics": topics,
        "labels_topic": labels_topic,
        "events": events,
        "decisions": decisions,
        "blocked_card": blocked_card,
        "live_eps_wall": (N_EVENTS + 2) / live_wall,
        "live_eps_processing": N_EVENTS / max(1e-3, (max(stamps) - min(stamps)) / 1000),
    }


@pytest.fixture(scope="module")
def result(stack, live, two_model_dir, tmp_path_factory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One backtest of the last two thirds of the live input (so the warm-up matters), two models,
    with the live state sampled while it runs."""
    model_dir, live_version, second = two_model_dir
    topics = live["topics"]
    out_dir = tmp_path_factory.mktemp("backtests")
    highs = end_offsets(stack.bootstrap, topics.input)
    ranges = {p: (h // 3, h) for p, h in highs.items()}
    offsets = ",".join(f"{p}:{s}-{e}" for p, (s, e) in sorted(ranges.items()))
    # A committed position of a live consumer group that has nothing to do with the job.
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": LIVE_GROUP + "-actions"})
    c.commit(offsets=[TopicPartition(topics.flagged, 0, 1)], asynchronous=False)
    c.close()
    live_topics = [*topics.outputs, topics.input, live["labels_topic"]]

    def live_state() -> dict[str, Any]:
        return {
            "offsets": {t: end_offsets(stack.bootstrap, t) for t in live_topics},
            "job_group": committed(stack.bootstrap, LIVE_GROUP, topics.input, 4),
            "other_group": committed(stack.bootstrap, LIVE_GROUP + "-actions", topics.flagged, 4),
            "redis": redis_state(stack.redis_url),
        }

    before = live_state()
    run_id = "t" + uuid.uuid4().hex[:8]
    args = ["--topic", topics.input, "--offsets", offsets, "--models", f"{live_version},{second}"]
    args += ["--thresholds", "0.2,0.5", "--labels-topic", live["labels_topic"], "--model-dir", str(model_dir)]
    args += ["--live-flagged-topic", topics.flagged, "--live-approved-topic", topics.approved]
    args += ["--out", str(out_dir), "--snapshot-db", "15", "--keep-topics", "--run-id", run_id]
    export_path = out_dir.parent / f"{run_id}.parquet"
    args += ["--export", str(export_path), "--k", "20"]
    proc = backtest(args, stack)
    during = []
    while proc.poll() is None:
        during.append(live_state())
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # the next sample in 3 s, or on at once when the run ends
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-4000:]
    throughput = json.loads((out_dir / run_id / "metrics.json").read_text())["throughput"]
    print(
        f"live job: {live['live_eps_wall']:.0f} ev/s wall, {live['live_eps_processing']:.0f} ev/s processing"
    )
    print(f"backtest: {throughput}")
    return {
        "run_id": run_id,
        "folder": out_dir / run_id,
        "out_dir": out_dir,
        "stdout": stdout.decode(),
        "before": before,
        "during": during,
        "after": live_state(),
        "ranges": ranges,
        "live_version": live_version,
        "second": second,
        "model_dir": model_dir,
        "export": export_path,
    }


def _backtest_decisions(stack: Any, run_id: str, version: str) -> dict[str, dict[str, Any]]:
    base = f"backtest.{run_id}.{version}"
    total = sum(
        sum(end_offsets(stack.bootstrap, f"{base}.{kind}").values()) for kind in ("flagged", "approved")
    )
    out = read_until(stack.bootstrap, stack.registry_url, [f"{base}.flagged", f"{base}.approved"], total, 60)
    return {r.record["event_id"]: r.record for r in out if r.record is not None}


def _in_range_ids(live: dict[str, Any], ranges: dict[int, tuple[int, int]], stack: Any) -> set[str]:
    out = read_until(stack.bootstrap, stack.registry_url, [live["topics"].input], N_EVENTS + 2, 60)
    return {
        r.record["event_id"]
        for r in out
        if r.record is not None and ranges[r.partition][0] <= r.offset < ranges[r.partition][1]
    }


def test_parity_with_live_decisions_and_features(stack, live, result) -> None:  # type: ignore[no-untyped-def]
    metrics = json.loads((result["folder"] / "metrics.json").read_text())
    in_range = _in_range_ids(live, result["ranges"], stack)
    parity = metrics["parity"]["result"]
    assert parity["verdict"] == "identical", parity["differences"][:3]
    assert parity["compared"] == len(in_range)
    replayed = _backtest_decisions(stack, result["run_id"], result["live_version"])
    assert in_range <= set(replayed)
    for event_id in in_range:
        mine, theirs = replayed[event_id], live["decisions"][event_id]
        for name in ("decision", "score", "threshold", "model_version", "features", "reasons", "degraded"):
            assert mine[name] == theirs[name], (event_id, name)
    blocked = [
        d for d in replayed.values() if d["card_id"] == live["blocked_card"] and d["event_id"] in in_range
    ]
    assert blocked and all(d["decision"] == "FLAGGED" for d in blocked)  # the snapshot carried the blocklist
    assert "identical" in (result["folder"] / "report.md").read_text()


def test_live_topics_groups_and_redis_untouched(result) -> None:  # type: ignore[no-untyped-def]
    assert result["during"], "the backtest finished before the live state could be sampled"
    for state in [*result["during"], result["after"]]:
        assert state["offsets"] == result["before"]["offsets"]
        assert state["job_group"] == result["before"]["job_group"]
        assert state["other_group"] == result["before"]["other_group"]
        assert state["redis"] == result["before"]["redis"]


def _independent(decisions: list[dict[str, Any]], truth: dict[str, Any]) -> dict[str, float]:
    """The headline figures recomputed from the decision records: sklearn for the curves, the
    business cost written out (missed fraud at least 50 EUR, 5 EUR a review, 100 EUR a false block)."""
    y = np.array([truth[d["event_id"]].is_fraud for d in decisions])
    flagged = np.array([d["decision"] == "FLAGGED" for d in decisions])
    review = np.array([d["action"] == "REVIEW" for d in decisions])
    block = np.array([d["action"] == "BLOCK" for d in decisions])
    scores = np.array([d["score"] for d in decisions])
    eur = np.array([to_eur(d["amount_minor"], d["currency"]) for d in decisions])
    tp, fp, fn = (flagged & y).sum(), (flagged & ~y).sum(), (~flagged & y).sum()
    missed_cost = sum(max(e, 50.0) for e in eur[~flagged & y])
    return {
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "pr_auc": average_precision_score(y, scores),
        "roc_auc": roc_auc_score(y, scores),
        "flagged_rate": flagged.mean(),
        "fraud_eur_missed": eur[~flagged & y].sum(),
        "total_cost_eur": missed_cost + review.sum() * 5.0 + (block & ~y).sum() * 100.0,
        "tp": tp,
        "fp": fp,
    }


def _card_precision(
    decisions: list[dict[str, Any]], truth: dict[str, Any], k: int
) -> dict[str, tuple[float, float]]:
    """Card precision@k per UTC day, the plain way: (lowest, highest) over the orders of the cards
    tied at the k-th score (isotonic calibration gives plateaus), equal when there is no such tie."""
    days: dict[str, dict[str, tuple[float, bool]]] = {}
    for d in decisions:
        day = d["event_time"].astimezone(UTC).date().isoformat()
        score, fraud = days.setdefault(day, {}).get(d["card_id"], (-1.0, False))
        days[day][d["card_id"]] = (max(score, d["score"]), fraud or truth[d["event_id"]].is_fraud)
    out = {}
    for day, cards in days.items():
        low = sorted(cards.values(), key=lambda sf: (-sf[0], sf[1]))[:k]  # legitimate cards first in a tie
        high = sorted(cards.values(), key=lambda sf: (-sf[0], not sf[1]))[:k]  # fraud first
        out[day] = (sum(f for _s, f in low) / len(low), sum(f for _s, f in high) / len(high))
    return out


def test_two_models_metrics_match_an_independent_computation(stack, live, result) -> None:  # type: ignore[no-untyped-def]
    metrics = json.loads((result["folder"] / "metrics.json").read_text())
    truth = {e.txn.event_id: e for e in live["events"]}
    in_range = _in_range_ids(live, result["ranges"], stack)
    assert set(metrics["models"]) == {result["live_version"], result["second"]}
    assert metrics["reference_model"] == result["live_version"]
    for version, m in metrics["models"].items():
        decisions = [
            d
            for d in _backtest_decisions(stack, result["run_id"], version).values()
            if d["event_id"] in in_range
        ]
        assert len(decisions) == len(in_range) == m["events"]["labelled"]
        expected = _independent(decisions, truth)
        got = {**m["at_threshold"], "pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"]}
        for name, value in expected.items():
            assert got[name] == pytest.approx(float(value), abs=0.01), (version, name)
        cards = m["card_precision_at_k"]
        assert cards["k"] == 20
        per_day = {day: v["precision"] for day, v in cards["per_day"].items()}
        bounds = _card_precision(decisions, truth, 20)
        assert set(per_day) == set(bounds)
        for day, (low, high) in bounds.items():
            assert low - 1e-6 <= per_day[day] <= high + 1e-6, (version, day, low, high)
        assert cards["mean"] == pytest.approx(float(np.mean(list(per_day.values()))), abs=1e-6)
    diff = metrics["comparison"][result["second"]]["pr_auc"]
    models = metrics["models"]
    assert diff == pytest.approx(
        models[result["second"]]["pr_auc"] - models[result["live_version"]]["pr_auc"], abs=1e-6
    )
    assert metrics["run"]["dead_letters"]["total"] == 2
    assert set(metrics["models"][result["second"]]["at_thresholds"]) == {"0.2", "0.5"}


def test_report_json_and_plots_are_written(result) -> None:  # type: ignore[no-untyped-def]
    import matplotlib.image  # here: importing it cost every unit-tier run its collection time

    folder: Path = result["folder"]
    metrics = json.loads((folder / "metrics.json").read_text())
    report = (folder / "report.md").read_text()
    for text in (
        "What was replayed",
        "Enrichment: **snapshot**",
        "Dead-letter-bound records in range: 2",
        "events/s",
    ):
        assert text in report
    assert metrics["plots"]
    for name in metrics["plots"]:
        path = folder / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.image.imread(path).ndim == 3  # a decodable image
        assert f"]({name})" in report
    assert not [p for p in result["out_dir"].iterdir() if p.name.startswith(".")]  # nothing half-written left
    assert "report:" in result["stdout"]
    assert "## Card precision@20 per UTC day" in report and "AUC ROC" in report


def test_export_holds_one_row_per_decision_of_the_live_model(stack, live, result) -> None:  # type: ignore[no-untyped-def]
    """The Parquet rows are the live model's replayed decisions in the range, field for field;
    is_fraud is the label, null for the events whose label the run never saw."""
    import pyarrow.parquet as pq  # here: not every unit-tier run needs it

    rows = pq.read_table(result["export"]).to_pylist()
    in_range = _in_range_ids(live, result["ranges"], stack)
    decisions = {
        e: d
        for e, d in _backtest_decisions(stack, result["run_id"], result["live_version"]).items()
        if e in in_range
    }
    assert len(rows) == len({r["event_id"] for r in rows}) == len(decisions)
    labelled = {e.txn.event_id: e.is_fraud for e in live["events"]}
    for row in rows:
        d = decisions[row["event_id"]]
        for name in ("user_id", "card_id", "merchant_id", "event_time", "amount_minor", "score", "action"):
            assert row[name] == d[name], (row["event_id"], name)
        assert row["rules_fired"] == list(d["rules_fired"])
        assert row["is_fraud"] == labelled[row["event_id"]]
        assert row["model_version"] == result["live_version"]


def test_export_leaves_is_fraud_null_without_a_label(
    stack: Any,
    model_dir: Path,
    small_topic: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A topic with no labels at all: every exported row has is_fraud null, none is dropped. The
    entry point runs in-process (``python -m backtest`` as a process is the ``result`` fixture's);
    its scoring service and job are processes all the same."""
    import pyarrow.parquet as pq

    empty_labels = make_topic("labels-none", 1, schemas.LABEL)
    path = tmp_path / "none.parquet"
    args = ["--topic", small_topic, "--model-dir", str(model_dir), "--labels-topic", empty_labels]
    args += ["--out", str(tmp_path / "out"), "--export", str(path), "--enrichment", "none"]
    # The live model is replayed, so the run compares with live decisions: empty topics of its own.
    live_topics = [make_topic(f"live-{kind}", 1, schemas.DECISION) for kind in ("flagged", "approved")]
    args += ["--live-flagged-topic", live_topics[0], "--live-approved-topic", live_topics[1]]
    connection = ["--bootstrap-servers", stack.bootstrap, "--registry-url", stack.registry_url]
    code = backtest_main([*connection, "--redis-url", stack.redis_url, *args])
    assert code == 0, capsys.readouterr().err[-3000:]
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == 10
    assert [r["is_fraud"] for r in rows] == [None] * 10


def _fails(stack: Any, args: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The backtest's entry point in-process (no interpreter start-up per refusal): exit 3, nothing
    written; its stderr."""
    capsys.readouterr()
    connection = ["--bootstrap-servers", stack.bootstrap, "--registry-url", stack.registry_url]
    code = backtest_main([*connection, "--redis-url", stack.redis_url, *args, "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 3, stderr[-2000:]
    assert not list(out.iterdir()) if out.exists() else True
    return stderr


@pytest.fixture
def small_topic(stack: Any, make_topic: Callable[..., str]) -> str:
    """A one-partition topic with 10 events."""
    topic = make_topic("small", 1, schemas.TRANSACTION)
    publisher = AvroPublisher(stack.bootstrap, stack.registry_url)
    for e in Simulator(SimConfig(seed=3, n_users=20)).events(count=10):
        publisher.send(topic, schemas.TRANSACTION, e.txn.user_id, e.txn.to_record(), new_headers())
    publisher.flush()
    return topic


def test_bad_inputs_exit_non_zero_with_a_clear_message(
    stack: Any, model_dir: Path, small_topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past-retention ranges are covered by the unit tests of ``ranges.resolve`` (deleting records
    on the test broker to move its low watermark is not reliable here)."""
    common = ["--topic", small_topic, "--model-dir", str(model_dir)]
    out = tmp_path / "out"
    msg = _fails(stack, [*common, "--models", "no-such-model"], out, capsys)
    assert "unknown model version 'no-such-model'" in msg and "available:" in msg
    msg = _fails(stack, [*common, "--offsets", "0:7-7"], out, capsys)
    assert "no events" in msg
    msg = _fails(stack, [*common, "--offsets", "0:0-80"], out, capsys)
    assert "beyond the end" in msg
    msg = _fails(stack, [*common, "--from", "2999-01-01T00:00:00Z"], out, capsys)
    assert "no events" in msg
    missing = f"missing.{uuid.uuid4().hex[:6]}"
    msg = _fails(stack, ["--topic", missing, "--model-dir", str(model_dir)], out, capsys)
    assert "does not exist" in msg
    assert missing not in AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(timeout=10).topics
