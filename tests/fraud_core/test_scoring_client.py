"""BatchScorer's own HTTP/1.1 connection against a real socket server in a thread: the request it
writes, keep-alive, reconnection after the server dropped an idle connection, and the fallback."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fraud_core.exceptions import ConfigError
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.scoring_client import BatchScorer
from fraud_core.transaction import Transaction
from tests.records import transaction

TXN = transaction(card_id="c-1", amount_minor=12_345, channel="ecom", event_time=1_700_000_000_000)
FEATURES = dict.fromkeys(FEATURE_NAMES, 1.0)


class FakeService(ThreadingHTTPServer):
    """Answers ``POST /v1/score/batch`` with one result per item; records what it received."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.connections = 0
        self.status = 200
        self.drop_after_answer = False  # close the connection without saying so, like an idle timeout
        # When set: the (status, body) to answer a request body with, instead of the normal answer.
        self.answer: Callable[[dict[str, Any]], tuple[int, bytes]] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeService

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = self.server.status
        if self.server.answer is not None:
            status, answer = self.server.answer(body)
        elif status == 200:
            results = [
                {"event_id": i["event_id"], "score": 0.75, "threshold": 0.5, "model_version": "m-1"}
                | {"reasons": ["why"], "shadow": None}
                for i in body["items"]
            ]
            answer = json.dumps({"model_version": "m-1", "threshold": 0.5, "results": results}).encode()
        else:
            answer = b'{"detail": "refused"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = self.server.drop_after_answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[FakeService]:
    server = FakeService()
    # A short poll: shutdown() waits for the loop to look, 0.5 s per test by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_scores_come_back_in_order_over_one_connection(service: FakeService) -> None:
    scorer = BatchScorer(service.url, "key-1", encoding="json", timeout_s=5)
    for n in (1, 3, 300):
        results = scorer.score([(TXN, FEATURES)] * n, correlation_id="corr-1")
        assert [(r.score, r.model_version, r.degraded) for r in results] == [(0.75, "m-1", False)] * n
    scorer.close()
    assert service.connections == 1
    headers, body = service.requests[0]
    assert headers["x-api-key"] == "key-1" and headers["x-correlation-id"] == "corr-1"
    assert headers["content-type"] == "application/json"
    assert body["items"][0]["event_id"] == TXN.event_id and body["items"][0]["features"] == FEATURES


def test_a_connection_the_server_dropped_is_reopened_without_a_fallback(service: FakeService) -> None:
    service.drop_after_answer = True
    scorer = BatchScorer(service.url, "key-1", encoding="json", timeout_s=5, retries=0)
    for _ in range(3):
        assert not scorer.score([(TXN, FEATURES)])[0].degraded
    assert service.connections == 3
    assert scorer.breaker.state == "closed"


def test_a_refused_request_falls_back_without_retrying(service: FakeService) -> None:
    service.status = 422
    scorer = BatchScorer(service.url, "key-1", encoding="json", timeout_s=5, retries=2, backoff_s=0)
    assert scorer.score([(TXN, FEATURES)])[0].degraded
    assert len(service.requests) == 1


def test_an_unreachable_service_falls_back() -> None:
    scorer = BatchScorer(
        "http://127.0.0.1:9", "key-1", encoding="json", timeout_s=0.5, retries=1, backoff_s=0
    )
    assert all(r.degraded for r in scorer.score([(TXN, FEATURES)] * 2))


def test_header_values_cannot_inject_headers(service: FakeService) -> None:
    scorer = BatchScorer(service.url, "key-1", encoding="json", timeout_s=5)
    scorer.score([(TXN, FEATURES)], correlation_id="c\r\nX-Evil: 1")
    headers, _ = service.requests[0]
    assert "x-evil" not in headers and "x-correlation-id" not in headers
    with pytest.raises(ConfigError):
        BatchScorer(service.url, "key\r\nX-Evil: 1")


def _scored(body: dict[str, Any], skip: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    return [
        {"event_id": i["event_id"], "score": 0.75, "threshold": 0.5, "model_version": "m-1", "reasons": []}
        | overrides
        for i in body["items"][skip:]
    ]


def _txns(n: int) -> list[tuple[Transaction, dict[str, float]]]:
    return [(replace(TXN, event_id=f"3f1c2a9e-8b7d-4c6e-9f0a-{k:012d}"), FEATURES) for k in range(n)]


def test_one_refused_item_gets_the_fallback_and_the_others_are_scored(
    service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "3f1c2a9e-8b7d-4c6e-9f0a-000000000002"

    def answer(body: dict[str, Any]) -> tuple[int, bytes]:
        ids = [i["event_id"] for i in body["items"]]
        if bad in ids:
            loc = ["body", "items", ids.index(bad), "features", "amount_eur"]
            error = {"type": "less_than_equal", "loc": loc, "msg": "Input should be <= 1e12", "input": 4e12}
            return 422, json.dumps({"detail": [error]}).encode()
        return 200, json.dumps({"results": _scored(body)}).encode()

    service.answer = answer
    scorer = BatchScorer(service.url, "key-1", encoding="json", timeout_s=5, retries=2, backoff_s=0)
    with caplog.at_level(logging.WARNING, logger="fraud_core.scoring_client"):
        results = scorer.score(_txns(5))
    assert [r.degraded for r in results] == [False, False, True, False, False]
    assert [len(body["items"]) for _, body in service.requests] == [5, 4]
    assert scorer.breaker.state == "closed" and scorer.breaker._failures == 0
    assert any(bad in m and "features.amount_eur" in m and "4e12" not in m for m in caplog.messages)


MALFORMED_200: list[tuple[str, Callable[[dict[str, Any]], bytes]]] = [
    ("short", lambda b: json.dumps({"results": _scored(b, skip=1)}).encode()),
    ("long", lambda b: json.dumps({"results": _scored(b) * 2}).encode()),
    ("empty results", lambda b: b'{"results": []}'),
    ("not JSON", lambda b: b"<html>proxy error</html>"),
    ("a JSON list", lambda b: b"[1, 2]"),
    ("results not a list", lambda b: b'{"results": {"a": 1}}'),
    ("result not an object", lambda b: json.dumps({"results": [1] * len(b["items"])}).encode()),
    ("another event", lambda b: json.dumps({"results": _scored(b, event_id="x")}).encode()),
    ("score missing", lambda b: json.dumps({"results": [{"threshold": 0.5} for _ in b["items"]]}).encode()),
    ("score a string", lambda b: json.dumps({"results": _scored(b, score="high")}).encode()),
    ("score NaN", lambda b: json.dumps({"results": _scored(b, score=float("nan"))}).encode()),
    ("score 2", lambda b: json.dumps({"results": _scored(b, score=2.0)}).encode()),
    ("shadow a string", lambda b: json.dumps({"results": _scored(b, shadow="s")}).encode()),
    ("reasons numbers", lambda b: json.dumps({"results": _scored(b, reasons=[1])}).encode()),
]


@pytest.mark.parametrize("body", [b for _, b in MALFORMED_200], ids=[n for n, _ in MALFORMED_200])
def test_a_malformed_200_is_a_transient_fault_not_a_crash(
    service: FakeService, body: Callable[[dict[str, Any]], bytes], caplog: pytest.LogCaptureFixture
) -> None:
    service.answer = lambda b: (200, body(b))
    scorer = BatchScorer(service.url, "key-1", encoding="json", timeout_s=5, retries=1, backoff_s=0)
    with caplog.at_level(logging.WARNING, logger="fraud_core.scoring_client"):
        results = scorer.score(_txns(3))
    assert [r.degraded for r in results] == [True] * 3
    assert len(service.requests) == 2  # retried like any transient fault
    assert scorer.breaker._failures == 1
    assert sum("malformed body" in m for m in caplog.messages) == 2
