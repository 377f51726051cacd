"""The naive baseline's scoring call (bench/naive_baseline.py ``SingleScorer``): ``POST /v1/score``
with the JSON body of one event over the job's keep-alive connection, against an in-process fake
HTTP server (a thread, no process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from bench.naive_baseline import SingleScorer
from tests.records import transaction


class FakeScoring:
    """Answers each request with the next of ``answers`` (status, body); records what it got."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []
        self.requests: list[dict[str, Any]] = []

        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, answer = fake.answers.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def fake_scoring() -> Iterator[FakeScoring]:
    fake = FakeScoring()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def answer(event_id: str, score: float) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "score": score,
            "decision": "APPROVED",
            "threshold": 0.5,
            "model_version": "m-7",
            "reasons": ["amount"],
            "shadow": None,
        }
    )


def test_each_event_is_one_post_to_v1_score_with_the_json_body(fake_scoring: FakeScoring) -> None:
    txns = [transaction(event_id="11111111-1111-4111-8111-111111111111"), transaction()]
    fake_scoring.answers = [(200, answer(txns[0].event_id, 0.25)), (200, answer(txns[1].event_id, 0.75))]
    scorer = SingleScorer(fake_scoring.url, "k" * 32, retries=0)
    results = scorer.score([(txns[0], {"f": 1.0}), (txns[1], {"f": 2.0})], correlation_id="cid-1")
    scorer.close()
    assert [r.score for r in results] == [0.25, 0.75]
    assert [r.model_version for r in results] == ["m-7", "m-7"]
    assert not any(r.degraded for r in results)
    first = fake_scoring.requests[0]
    assert first["path"] == "/v1/score"
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["X-API-Key"] == "k" * 32
    assert first["headers"]["X-Correlation-ID"] == "cid-1"
    body = orjson.loads(first["body"])
    assert body["event_id"] == txns[0].event_id and body["features"] == {"f": 1.0}
    assert body["amount_minor"] == txns[0].amount_minor


def test_an_answer_for_another_event_is_retried_then_falls_back(fake_scoring: FakeScoring) -> None:
    txn = transaction()
    wrong = answer("22222222-2222-4222-8222-222222222222", 0.1)
    fake_scoring.answers = [(200, wrong), (200, wrong)]
    scorer = SingleScorer(fake_scoring.url, "k" * 32, retries=1, backoff_s=0.0)
    [result] = scorer.score([(txn, {})])
    scorer.close()
    assert result.degraded
    assert len(fake_scoring.requests) == 2


def test_a_refused_request_is_not_retried(fake_scoring: FakeScoring) -> None:
    fake_scoring.answers = [(422, b'{"detail": []}')]
    scorer = SingleScorer(fake_scoring.url, "k" * 32, retries=2, backoff_s=0.0)
    [result] = scorer.score([(transaction(), {})])
    scorer.close()
    assert result.degraded
    assert len(fake_scoring.requests) == 1
