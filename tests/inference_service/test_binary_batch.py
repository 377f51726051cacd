"""The binary columnar body of ``POST /v1/score/batch`` against the real service process (see
conftest.py): the same scores as the JSON body, the same strictness (422 naming the row, field and
value, checked against what the JSON body answers for the same rows), 415, 401 and the body limit.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgpack
import pytest

from fraud_core.scoring_wire import MSGPACK, decode, encode_request
from tests.inference_service.conftest import MAX_BATCH, MAX_BODY, Service

BINARY = {"Content-Type": MSGPACK, "Accept": MSGPACK}


def _columns(items: list[dict[str, Any]]) -> dict[str, Any]:
    columns: dict[str, Any] = decode(encode_request(items))
    return columns


def test_binary_and_json_bodies_score_the_same_rows_identically(
    service: Service, sample_items: list[dict[str, Any]]
) -> None:
    items = sample_items[100 : 100 + MAX_BATCH]
    with service.client() as client:
        by_json = client.post("/v1/score/batch", json={"items": items})
        by_binary = client.post("/v1/score/batch", content=encode_request(items), headers=BINARY)
        binary_in_json_out = client.post(
            "/v1/score/batch", content=encode_request(items), headers={"Content-Type": MSGPACK}
        )
    assert by_json.status_code == by_binary.status_code == binary_in_json_out.status_code == 200
    assert by_binary.headers["content-type"] == MSGPACK
    assert binary_in_json_out.headers["content-type"] == "application/json"
    expected = by_json.json()
    assert binary_in_json_out.json() == expected
    answer = msgpack.unpackb(by_binary.content)
    results = expected["results"]
    assert answer["model_version"] == expected["model_version"]
    assert answer["threshold"] == expected["threshold"]
    assert answer["block_threshold"] == results[0]["block_threshold"]
    assert answer["event_id"] == [i["event_id"] for i in items] == [r["event_id"] for r in results]
    assert answer["score"] == [r["score"] for r in results]
    assert answer["decision"] == [r["decision"] for r in results]
    assert answer["reasons"] == [r["reasons"] for r in results]
    # The shared service runs a shadow model: its scores travel too.
    assert answer["shadow_model_version"] == results[0]["shadow"]["model_version"]
    assert answer["shadow_score"] == [r["shadow"]["score"] for r in results]
    assert len(set(answer["score"])) > 1  # real rows, not one repeated


def test_a_bad_value_is_422_naming_row_field_and_value_as_the_json_body_does(
    service: Service, sample_items: list[dict[str, Any]]
) -> None:
    items = copy.deepcopy(sample_items[:6])
    items[1]["features"]["hour_of_day"] = 31.0
    items[2]["features"]["amount_eur"] = -5.0
    items[3]["channel"] = "FAX"
    items[4]["event_id"] = "not-a-uuid"
    items[5]["amount_minor"] = -1
    with service.client() as client:
        by_json = client.post("/v1/score/batch", json={"items": items})
        by_binary = client.post("/v1/score/batch", content=encode_request(items), headers=BINARY)
    assert by_json.status_code == by_binary.status_code == 422
    assert by_binary.headers["content-type"] == "application/json"

    def named(r: Any) -> dict[tuple[Any, ...], Any]:
        return {tuple(e["loc"]): e["input"] for e in r.json()["detail"]}

    assert (
        named(by_binary)
        == named(by_json)
        == {
            ("body", "items", 1, "features", "hour_of_day"): 31.0,
            ("body", "items", 2, "features", "amount_eur"): -5.0,
            ("body", "items", 3, "channel"): "FAX",
            ("body", "items", 4, "event_id"): "not-a-uuid",
            ("body", "items", 5, "amount_minor"): -1,
        }
    )


def test_a_non_finite_feature_is_422_naming_its_row(
    service: Service, sample_items: list[dict[str, Any]]
) -> None:
    items = copy.deepcopy(sample_items[:3])
    items[2]["features"]["txn_count_1m"] = float("inf")
    with service.client() as client:
        r = client.post("/v1/score/batch", content=encode_request(items), headers=BINARY)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "items", 2, "features", "txn_count_1m"]
    assert error["type"] == "finite_number"


@pytest.mark.parametrize(
    ("change", "loc", "value"),
    [
        (lambda c: c.update(bogus=[1, 2, 3]), ["body", "bogus"], [1, 2, 3]),
        (lambda c: c.pop("country"), ["body", "country"], None),
        (lambda c: c["features"].pop("is_foreign"), ["body", "features", "is_foreign"], None),
        (
            lambda c: c["features"].update(shoe_size=b"\0" * 24),
            ["body", "features", "shoe_size"],
            "unknown feature",
        ),
        (lambda c: c.update(user_id=["u-1"]), ["body", "user_id"], 1),
        (lambda c: c["features"].update(mcc_risk=b"\0" * 16), ["body", "features", "mcc_risk"], "16 bytes"),
        (lambda c: c["features"].update(mcc_risk=[0.0, 1.0, 2.0]), ["body", "features", "mcc_risk"], "list"),
    ],
    ids=[
        "unknown column",
        "missing column",
        "missing feature",
        "unknown feature",
        "short column",
        "short feature",
        "feature not bin",
    ],
)
def test_a_bad_column_is_422_naming_it(
    service: Service, sample_items: list[dict[str, Any]], change: Any, loc: list[Any], value: Any
) -> None:
    columns = _columns(sample_items[:3])
    change(columns)
    with service.client() as client:
        r = client.post("/v1/score/batch", content=msgpack.packb(columns), headers=BINARY)
    assert r.status_code == 422, r.text
    assert [(e["loc"], e["input"]) for e in r.json()["detail"]] == [(loc, value)]


def test_a_body_that_is_not_msgpack_is_422(service: Service) -> None:
    with service.client() as client:
        r = client.post("/v1/score/batch", content=b"\xc1 not msgpack", headers=BINARY)
        scalar = client.post("/v1/score/batch", content=msgpack.packb(7), headers=BINARY)
    assert r.status_code == scalar.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body"]
    assert scalar.json()["detail"][0]["loc"] == ["body"]


def test_an_unknown_content_type_is_415_and_json_stays_the_default(
    service: Service, sample_items: list[dict[str, Any]]
) -> None:
    body = json.dumps({"items": sample_items[:2]}).encode()
    with service.client() as client:
        for content_type in ("text/csv", "application/vnd.apache.arrow.stream", "application/xml"):
            r = client.post("/v1/score/batch", content=body, headers={"Content-Type": content_type})
            assert r.status_code == 415, content_type
            assert MSGPACK in r.json()["detail"]
        assert client.post("/v1/score/batch", content=body).status_code == 200  # no Content-Type: JSON
        charset = {"Content-Type": "application/json; charset=utf-8"}
        assert client.post("/v1/score/batch", content=body, headers=charset).status_code == 200


def test_the_binary_body_needs_the_key_as_json_does(
    service: Service, sample_items: list[dict[str, Any]]
) -> None:
    body = encode_request(sample_items[:2])
    with service.client() as client:
        client.headers.pop("X-API-Key")
        assert client.post("/v1/score/batch", content=body, headers=BINARY).status_code == 401
        wrong = client.post("/v1/score/batch", content=body, headers={**BINARY, "X-API-Key": "nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "X-API-Key"
        # The same single check guards the model card.
        assert client.get("/v1/model").status_code == 401
        assert client.get("/v1/model", headers={"X-API-Key": "nope"}).status_code == 401
    with service.client() as client:
        assert client.get("/v1/model").status_code == 200
        assert client.post("/v1/score/batch", content=body, headers=BINARY).status_code == 200


def test_oversized_binary_bodies_are_refused(service: Service, sample_items: list[dict[str, Any]]) -> None:
    huge = encode_request(sample_items[:2000])
    assert len(huge) > MAX_BODY
    with service.client() as client:
        assert client.post("/v1/score/batch", content=huge, headers=BINARY).status_code == 413
        streamed = client.post(
            "/v1/score/batch",
            content=iter([huge[i : i + 8192] for i in range(0, len(huge), 8192)]),
            headers=BINARY,
        )
        assert streamed.status_code == 413
        too_many = client.post(
            "/v1/score/batch", content=encode_request(sample_items[: MAX_BATCH + 1]), headers=BINARY
        )
        assert too_many.status_code == 422
        assert too_many.json()["detail"][0]["loc"] == ["body", "items"]
        empty = {name: [] for name in ("event_id",)}
        assert client.post("/v1/score/batch", content=msgpack.packb(empty), headers=BINARY).status_code == 422


def test_the_binary_body_is_documented(service: Service) -> None:
    with service.client() as client:
        spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/score/batch"]["post"]
    assert MSGPACK in operation["requestBody"]["content"]
    assert "415" in operation["responses"]
