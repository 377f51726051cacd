"""Drift through the running pipeline: the real job scores a simulated stream through the real
scoring service, and the drift monitor, as its own process, consumes the decisions and serves its
gauges. The unshifted first half must keep every paged feature's PSI below the alert threshold
and judge no windowed feature while its window fills; the shifted second half (the simulator's
drift switch) must raise the paged PSI above the threshold.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

import schemas
from deploy.local.processes import ManagedProcess, spawn, wait_http
from deploy.local.stack import free_port
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher
from fraud_core.simulator import SimConfig, Simulator
from producers.profiles import seed_profiles
from tests.deploy.conftest import DEPLOY

pytestmark = [pytest.mark.integration, pytest.mark.flink]

HALF = 3000  # events per phase, and the monitor's window: after each phase it holds exactly that phase
WAIT_S = 300.0


def paged_features_and_threshold() -> tuple[list[str], float]:
    """The features the FeatureDrift alert pages on, and its PSI threshold, from the rules file."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    (expr,) = [r["expr"] for g in rules for r in g["rules"] if r.get("alert") == "FeatureDrift"]
    features = re.search(r'feature=~"([^"]+)"', expr)
    threshold = re.search(r">\s*([0-9.]+)\s*$", expr)
    assert features and threshold, expr
    return features.group(1).split("|"), float(threshold.group(1))


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Metric name -> (labels, value) of every sample."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def wait_for(
    url: str, monitor: ManagedProcess, condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    metrics: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert monitor.alive, monitor.tail()
        metrics = scrape(url)
        if condition(metrics):
            return metrics
        time.sleep(0.25)
    raise AssertionError(
        f"{what} not reached in {WAIT_S:.0f}s; last metrics: {metrics.get('fraud_feature_psi')}"
    )


def total(metrics: dict[str, Any], name: str) -> float:
    return sum(v for _labels, v in metrics.get(name, []))


def psi_by_feature(metrics: dict[str, Any]) -> dict[str, float]:
    return {labels["feature"]: v for labels, v in metrics.get("fraud_feature_psi", [])}


def test_a_shifted_stream_raises_feature_psi_above_the_alert_threshold_and_an_unshifted_one_does_not(
    stack, job_topics, run_job, scoring_service, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    features, threshold = paged_features_and_threshold()
    # Another seed of the population the model was trained on (seed 7): unseen customers, same mix.
    simulator = Simulator(SimConfig(seed=11, drift_at=HALF))
    seed_profiles(stack.redis_url, simulator.profiles())
    events = list(simulator.events(count=2 * HALF))
    topics = job_topics()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    monitor = spawn(
        "drift-monitor",
        ["-m", "monitoring"],
        tmp_path / "monitor.log",
        {
            "APP_ENV": "test",
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "SCHEMA_REGISTRY_URL": stack.registry_url,
            "SCORING_URL": scoring_service.url,
            "SCORING_API_KEY": scoring_service.api_key,
            "MODEL_DIR": str(scoring_service.model_dir),
            "FLAGGED_TOPIC": topics.flagged,
            "APPROVED_TOPIC": topics.approved,
            "GROUP_ID": f"drift-{topics.flagged}",
            "AUTO_OFFSET_RESET": "earliest",
            "DRIFT_WINDOW": str(HALF),
            "DRIFT_MIN_EVENTS": "1",  # publish every version's window, so the windows add up to what was read
            "MONITOR_METRICS_PORT": str(port),
        },
    )
    try:
        wait_http(url, monitor)
        run_job(topics, env={"SCORING_TIMEOUT_MS": "10000", "REDIS_TIMEOUT_MS": "5000"})
        publisher = AvroPublisher(stack.bootstrap, stack.registry_url)

        def publish(part: list[Any]) -> None:
            for event in part:
                txn = event.txn
                publisher.send(topics.input, schemas.TRANSACTION, txn.user_id, txn.to_record(), new_headers())
            publisher.flush()

        publish(events[:HALF])
        before = wait_for(
            url,
            monitor,
            lambda m: total(m, "fraud_drift_window_events") == HALF and bool(psi_by_feature(m)),
            "a full window of the unshifted decisions",
        )
        assert total(before, "fraud_drift_unreferenced_decisions_total") == 0, "decisions without a reference"
        unshifted = {f: v for f, v in psi_by_feature(before).items() if f in features}
        assert set(unshifted) == set(features)
        assert max(unshifted.values()) < threshold, unshifted
        # A fresh start: the window's oldest decision is the stream's first, so no windowed feature is
        # judged yet (issue 24 §8); the gauge says they are warming, and no velocity alert can fire.
        warming = {labels["feature"] for labels, v in before.get("fraud_feature_warming", []) if v == 1}
        assert {"txn_count_1m", "user_count_7d", "card_fraud_rate_1d"} <= warming, warming
        assert not warming & set(psi_by_feature(before)), psi_by_feature(before)

        shifted = ("is_foreign", "amount_eur")  # what the simulator's drift switch moves
        assert set(shifted) <= set(features), features  # and the alert pages on them
        publish(events[HALF:])
        # The decision counter moves per message, but the gauges are published every few seconds: a
        # reading taken as the counter reaches 2 * HALF may still hold a half-shifted window. So wait
        # for the shifted window itself; a drift that never shows fails on the deadline.
        after = wait_for(
            url,
            monitor,
            lambda m: (
                total(m, "fraud_drift_decisions_total") >= 2 * HALF
                and all(psi_by_feature(m).get(f, 0.0) > threshold for f in shifted)
            ),
            "is_foreign and amount_eur PSI above the threshold after the shift",
        )
        score_psi = total(after, "fraud_score_psi")
        assert score_psi > total(before, "fraud_score_psi")
    finally:
        monitor.stop(timeout_s=10)
    assert monitor.proc.returncode == 0, monitor.tail()
