"""The scoring service as a real process (see conftest.py): scoring, auth, validation, fuzzing,
hot reload, refusal of a bad model, shadow scores. No timed assertions.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.features import VELOCITY_FEATURES
from fraud_core.model_folder import CARD_FILE, LIVE_POINTER, MODEL_FILE, write_pointer
from fraud_core.simulator import SimConfig, Simulator
from inference_service.core.config import DEV_ADMIN_API_KEY
from inference_service.model_registry import load_model
from inference_service.training.train import TrainConfig, replay, split_by_time
from tests.services import (
    API_KEY,
    MAX_BATCH,
    MAX_BODY,
    SMALL_EVENTS,
    SMALL_USERS,
    Registry,
    Service,
    train_small,
)


def _rows(items: list[dict[str, Any]]) -> np.ndarray:
    return np.array([[i["features"][n] for n in FEATURE_NAMES] for i in items])


def registry_card(registry: Registry) -> dict[str, Any]:
    return dict(json.loads((registry.path / registry.live / "card.json").read_text()))


def _proba(registry: Registry, version: str, items: list[dict[str, Any]]) -> np.ndarray:
    estimator = joblib.load(registry.path / version / MODEL_FILE)
    return np.asarray(estimator.predict_proba(_rows(items))[:, 1])


def _average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision by its definition, written out here: the precision at each distinct score
    (every payment scoring at least that much flagged), weighted by the recall it adds."""
    total, precision_sum, previous_recall = int(y.sum()), 0.0, 0.0
    for cut in sorted(set(scores.tolist()), reverse=True):
        flagged = scores >= cut
        hits = int(y[flagged].sum())
        recall = hits / total
        precision_sum += (recall - previous_recall) * hits / int(flagged.sum())
        previous_recall = recall
    return precision_sum


@pytest.mark.integration  # trains a real model
def test_training_is_deterministic_and_its_card_counts_what_the_model_does(
    registry: Registry, tmp_path: Path
) -> None:
    """Retraining the session's SHADOW version (seed 8) gives the same card; its held-out figures
    equal a count, made here, of what the stored model does on the held-out period."""
    again = train_small(tmp_path, seed=8, promote=True)
    assert again == registry.shadow and (tmp_path / LIVE_POINTER).read_text().strip() == again
    card_text = (registry.path / registry.shadow / CARD_FILE).read_text()
    assert (tmp_path / again / CARD_FILE).read_text() == card_text
    written = json.loads(card_text)

    sim = Simulator(SimConfig(seed=8, n_users=SMALL_USERS))
    data = replay(sim.events(count=SMALL_EVENTS), sim.profiles())
    _train, _cal, held_out = split_by_time(data, TrainConfig(seed=8))
    scores = load_model(registry.path, registry.shadow).estimator.predict_proba(held_out.x)[:, 1]
    fraud = held_out.y == 1
    review_at, block_at = written["threshold"], written["block_threshold"]
    assert 0 < review_at < 1 and (block_at is None or review_at <= block_at <= 1)
    block = scores >= block_at if block_at is not None else np.zeros(len(scores), bool)
    flagged = scores >= review_at
    held = written["metrics"]["held_out"]
    assert held["events"] == len(scores) and held["frauds"] == int(fraud.sum()) > 0
    assert held["flag_rate"] == pytest.approx(flagged.mean(), abs=1e-6)
    assert held["precision_at_threshold"] == pytest.approx((flagged & fraud).sum() / flagged.sum(), abs=1e-6)
    assert held["recall_at_threshold"] == pytest.approx((flagged & fraud).sum() / fraud.sum(), abs=1e-6)
    assert held["pr_auc"] == pytest.approx(_average_precision(held_out.y, scores), abs=1e-6)
    actions = held["actions"]
    assert actions["BLOCK"]["payments"] == int(block.sum())
    assert actions["REVIEW"]["payments"] == int((flagged & ~block).sum())
    assert actions["flagged"]["frauds"] == int((flagged & fraud).sum())
    # The ablation is the model refitted without the velocity features: what they add is the
    # difference of the two held-out figures.
    ablation = written["ablation"]
    assert ablation["without"] == list(VELOCITY_FEATURES)
    assert ablation["velocity_adds"]["pr_auc"] == pytest.approx(
        held["pr_auc"] - ablation["held_out"]["pr_auc"], abs=1e-6
    )
    assert written["features"] == list(FEATURE_NAMES)


def test_single_and_batch_equal_in_process_predict_proba(
    service: Service, registry: Registry, sample_items: list[dict[str, Any]]
) -> None:
    items = sample_items[:MAX_BATCH]
    expected = _proba(registry, registry.live, items)
    with service.client() as client:
        batch = client.post("/v1/score/batch", json={"items": items})
        assert batch.status_code == 200, batch.text
        body = batch.json()
        assert body["model_version"] == registry.live
        assert [r["event_id"] for r in body["results"]] == [i["event_id"] for i in items]
        assert np.array_equal([r["score"] for r in body["results"]], expected)
        for item, want in zip(items[:10], expected[:10], strict=True):
            one = client.post("/v1/score", json=item).json()
            assert one["score"] == want
            assert one["decision"] == ("FLAGGED" if want >= one["threshold"] else "APPROVED")
            assert one["block_threshold"] == registry_card(registry)["block_threshold"]
            assert one["model_version"] == registry.live


def test_flagged_payments_carry_reasons(service: Service, sample_items: list[dict[str, Any]]) -> None:
    with service.client() as client:
        results = []
        for start in range(0, 1000, MAX_BATCH):
            r = client.post("/v1/score/batch", json={"items": sample_items[start : start + MAX_BATCH]})
            results += r.json()["results"]
    flagged = [r for r in results if r["decision"] == "FLAGGED"]
    assert flagged, "the sample stream should contain some fraud"
    assert all(r["reasons"] for r in flagged)


def test_api_key_required(service: Service, sample_items: list[dict[str, Any]]) -> None:
    with service.client() as client:
        for headers in ({}, {"X-API-Key": "wrong"}):
            client.headers.pop("X-API-Key", None)
            client.headers.update(headers)
            assert client.post("/v1/score", json=sample_items[0]).status_code == 401
            assert client.post("/v1/score/batch", json={"items": sample_items[:2]}).status_code == 401
            assert client.get("/v1/model").status_code == 401
            assert client.post("/v1/admin/reload").status_code == 401
    assert service.client().get("/healthz").status_code == 200


INVALID: list[tuple[str, Any, list[Any]]] = [
    ("event_id", "not-a-uuid", ["body", "event_id"]),
    ("user_id", "", ["body", "user_id"]),
    ("amount_minor", -1, ["body", "amount_minor"]),
    ("amount_minor", 10**12, ["body", "amount_minor"]),
    ("amount_minor", "12", ["body", "amount_minor"]),
    ("currency", "XXX", ["body", "currency"]),
    ("merchant_category", "541", ["body", "merchant_category"]),
    ("country", "de", ["body", "country"]),
    ("channel", "FAX", ["body", "channel"]),
    ("event_time", 0, ["body", "event_time"]),
    ("features.txn_count_1m", -1.0, ["body", "features", "txn_count_1m"]),
    ("features.hour_of_day", 24.0, ["body", "features", "hour_of_day"]),
    ("features.amount_eur", "NaN", ["body", "features", "amount_eur"]),
    ("features.unknown_feature", 1.0, ["body", "features", "unknown_feature"]),
    ("features.-known_device", None, ["body", "features", "known_device"]),
]


@pytest.mark.parametrize(("field", "value", "loc"), INVALID, ids=[f"{f}={v!r}" for f, v, _ in INVALID])
def test_each_invalid_field_is_422_naming_it(
    service: Service, sample_items: list[dict[str, Any]], field: str, value: Any, loc: list[Any]
) -> None:
    item = copy.deepcopy(sample_items[0])
    if field.startswith("features."):
        name = field.removeprefix("features.")
        if name.startswith("-"):
            del item["features"][name[1:]]
        else:
            item["features"][name] = value
    else:
        item[field] = value
    body = json.dumps(item).replace('"NaN"', "NaN")  # a bare NaN token, as a sloppy client would send
    with service.client() as client:
        r = client.post("/v1/score", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert loc in [e["loc"] for e in r.json()["detail"]]
        rb = client.post("/v1/score/batch", content='{"items": [' + body + "]}")
        assert rb.status_code == 422
        assert ["body", "items", 0, *loc[1:]] in [e["loc"] for e in rb.json()["detail"]]


def test_oversized_requests_are_refused(service: Service, sample_items: list[dict[str, Any]]) -> None:
    with service.client() as client:
        too_many = client.post("/v1/score/batch", json={"items": sample_items[: MAX_BATCH + 1]})
        assert too_many.status_code == 422
        assert too_many.json()["detail"][0]["loc"] == ["body", "items"]
        huge = client.post("/v1/score/batch", json={"items": sample_items[: MAX_BODY // 300]})
        assert huge.status_code == 413
        assert client.post("/v1/score/batch", json={"items": []}).status_code == 422
        assert client.get("/healthz").status_code == 200


def test_a_bad_item_deep_in_a_batch_is_422_naming_its_index_field_and_value(
    service: Service, sample_items: list[dict[str, Any]]
) -> None:
    items = copy.deepcopy(sample_items[:5])
    items[3]["features"]["hour_of_day"] = 31.0
    items[4]["channel"] = "FAX"
    with service.client() as client:
        r = client.post("/v1/score/batch", json={"items": items})
    assert r.status_code == 422
    errors = {tuple(e["loc"]): e["input"] for e in r.json()["detail"]}
    assert errors == {
        ("body", "items", 3, "features", "hour_of_day"): 31.0,
        ("body", "items", 4, "channel"): "FAX",
    }


def test_body_limit_applies_before_the_key_and_to_streamed_bodies(
    service: Service, sample_items: list[dict[str, Any]]
) -> None:
    body = json.dumps({"items": sample_items[: MAX_BODY // 300]}).encode()
    assert len(body) > MAX_BODY
    with service.client() as client:
        client.headers.pop("X-API-Key")
        assert client.post("/v1/score/batch", content=body).status_code == 413
    with service.client() as client:
        # No Content-Length (chunked upload): refused once the bytes read pass the limit.
        streamed = client.post(
            "/v1/score/batch", content=iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
        )
        assert streamed.status_code == 413
        assert client.post("/v1/score/batch", json={"items": sample_items[:2]}).status_code == 200


def test_scoring_routes_answer_other_methods_with_405_and_are_documented(service: Service) -> None:
    with service.client() as client:
        for path in ("/v1/score", "/v1/score/batch"):
            r = client.get(path)
            assert r.status_code == 405 and r.headers["allow"] == "POST"
        spec = client.get("/openapi.json").json()
    for path, body in (("/v1/score", "ScoreItem"), ("/v1/score/batch", "BatchRequest")):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(body)
        assert {"200", "401", "413", "422", "503"} <= set(operation["responses"])


def test_correlation_id_is_echoed_and_logged(service: Service, sample_items: list[dict[str, Any]]) -> None:
    with service.client(**{"X-Correlation-ID": "corr-test-42"}) as client:
        r = client.post("/v1/score", json={"bad": 1})
    assert r.headers["x-correlation-id"] == "corr-test-42"

    def logged() -> bool:
        lines = [json.loads(line) for line in service.log.read_text().splitlines() if line.startswith("{")]
        return any(
            line.get("correlation_id") == "corr-test-42" and line.get("status") == 422 for line in lines
        )

    # the access line is written once the response has gone out, so it may trail the response a little
    deadline = time.monotonic() + 10
    while not logged():
        assert time.monotonic() < deadline, (
            f"no 422 line with the correlation id: {service.log.read_text()[-2000:]}"
        )
        time.sleep(0.05)
    assert API_KEY not in service.log.read_text()


def test_shadow_scores_in_responses_and_metrics(
    service: Service, registry: Registry, sample_items: list[dict[str, Any]]
) -> None:
    items = sample_items[:MAX_BATCH]
    with service.client() as client:
        results = client.post("/v1/score/batch", json={"items": items}).json()["results"]
        metrics = client.get("/metrics").text
        card = client.get("/v1/model").json()
    assert all(r["shadow"]["model_version"] == registry.shadow for r in results)
    assert np.array_equal([r["shadow"]["score"] for r in results], _proba(registry, registry.shadow, items))
    assert f'scoring_shadow_decisions_total{{agreement="agree",live_version="{registry.live}"' in metrics
    assert f'scoring_score_count{{model_version="{registry.shadow}",role="shadow"}}' in metrics
    assert "scoring_request_duration_seconds_bucket" in metrics and "scoring_batch_size_bucket" in metrics
    assert (
        'scoring_request_duration_seconds_count{method="POST",route="/v1/score/batch",status="2xx"}'
        in metrics
    )
    assert card["version"] == registry.live and card["shadow_version"] == registry.shadow


def test_schemathesis_finds_no_server_errors(service: Service, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            service.url + "/openapi.json",
            "-H",
            f"X-API-Key: {API_KEY}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--generation-deterministic",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # st writes a .schemathesis/ cache into its working directory
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert service.proc.poll() is None


def test_hot_reload_under_load_loses_nothing(
    private_service: Service, registry: Registry, sample_items: list[dict[str, Any]]
) -> None:
    svc = private_service
    items = sample_items[:20]
    expected = {v: _proba(registry, v, items) for v in (registry.live, registry.shadow)}
    stop = threading.Event()
    failures: list[str] = []
    seen: dict[str, int] = {registry.live: 0, registry.shadow: 0}

    def hammer() -> None:
        with svc.client() as client:
            while not stop.is_set():
                r = client.post("/v1/score/batch", json={"items": items})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                version = body["model_version"]
                if version not in expected or any(x["model_version"] != version for x in body["results"]):
                    failures.append(f"inconsistent versions in {body}")
                elif not np.array_equal([x["score"] for x in body["results"]], expected[version]):
                    failures.append(f"scores do not match version {version}")
                else:
                    seen[version] += 1

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for target in (registry.shadow, registry.live, registry.shadow, registry.live):
            write_pointer(svc.model_dir, LIVE_POINTER, target)
            svc.wait_for_live(target)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen[registry.live] > 0 and seen[registry.shadow] > 0

    # A model whose card does not match the features is refused; the old one keeps serving.
    write_pointer(svc.model_dir, LIVE_POINTER, registry.bad)
    with svc.client(**{"X-Admin-Key": DEV_ADMIN_API_KEY}) as client:
        refused = client.post("/v1/admin/reload")
        assert refused.status_code == 409
        assert registry.bad in refused.json()["detail"]
        still = client.post("/v1/score", json=items[0])
        assert still.status_code == 200 and still.json()["model_version"] == registry.live
        assert client.get("/readyz").json()["live_version"] == registry.live
        metrics = client.get("/metrics").text
    assert 'scoring_model_reloads_total{outcome="refused",role="live"}' in metrics
    assert "do not match this service's FEATURE_NAMES" in svc.log.read_text()
