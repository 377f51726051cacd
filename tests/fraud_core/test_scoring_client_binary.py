"""The binary columnar body from the client's side: the codec in-process (unit), a service that
refuses the binary type (a fake socket server: the error must be loud, not a silent switch to
JSON), and BatchScorer against the real service (integration): binary and JSON give identical
results for the same rows."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgpack
import numpy as np
import pytest

from fraud_core.decision import scoring_request
from fraud_core.exceptions import ConfigError, MalformedAnswer
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.scoring_client import BatchScorer, parse_binary_results
from fraud_core.scoring_wire import FLOAT64, ITEM_COLUMNS, MSGPACK, encode_request, encode_response
from tests.records import transaction


def _items(n: int) -> list[dict[str, Any]]:
    return [
        scoring_request(
            transaction(
                event_id=str(uuid.UUID(int=i + 1)), amount_minor=1000 + i, event_time=1_700_000_000_000 + i
            ),
            {name: float(i * 100 + j) / 7 for j, name in enumerate(FEATURE_NAMES)},
        )
        for i in range(n)
    ]


def test_the_request_carries_every_field_as_a_column_and_every_feature_as_float64() -> None:
    items = _items(5)
    columns = msgpack.unpackb(encode_request(items))
    assert set(columns) == {*ITEM_COLUMNS, "features"}
    for name in ITEM_COLUMNS:
        assert columns[name] == [item[name] for item in items]
    assert list(columns["features"]) == list(FEATURE_NAMES)
    for name, raw in columns["features"].items():
        assert isinstance(raw, bytes)
        assert np.frombuffer(raw, dtype=FLOAT64).tolist() == [item["features"][name] for item in items]


def _answer(items: list[dict[str, Any]], shadow: bool) -> list[dict[str, Any]]:
    return [
        {
            "event_id": item["event_id"],
            "score": i / 10,
            "decision": "FLAGGED" if i > 2 else "APPROVED",
            "threshold": 0.25,
            "block_threshold": 0.9,
            "model_version": "m-1",
            "reasons": [f"reason {i}"] if i else [],
            "shadow": {"score": 0.5 + i / 100, "model_version": "m-0"} if shadow else None,
        }
        for i, item in enumerate(items)
    ]


@pytest.mark.parametrize("shadow", [True, False])
def test_a_binary_answer_reads_as_the_same_results_as_its_rows(shadow: bool) -> None:
    items = _items(4)
    rows = _answer(items, shadow)
    results = parse_binary_results(encode_response(rows, "m-1", 0.25, 0.9), items)
    assert [r.score for r in results] == [0.0, 0.1, 0.2, 0.3]
    assert [r.reasons for r in results] == [[], ["reason 1"], ["reason 2"], ["reason 3"]]
    assert {(r.threshold, r.block_threshold, r.model_version, r.degraded) for r in results} == {
        (0.25, 0.9, "m-1", False)
    }
    if shadow:
        assert [r.shadow_score for r in results] == [0.5, 0.51, 0.52, 0.53]
        assert {r.shadow_model_version for r in results} == {"m-0"}
    else:
        assert {(r.shadow_score, r.shadow_model_version) for r in results} == {(None, None)}


@pytest.mark.parametrize(
    "spoil",
    [
        lambda a: a.update(score=a["score"][:-1]),
        lambda a: a["event_id"].reverse(),
        lambda a: a["score"].__setitem__(1, 1.5),
        lambda a: a["score"].__setitem__(1, math.nan),
        lambda a: a["reasons"].__setitem__(0, [3]),
        lambda a: a.pop("model_version"),
        lambda a: a.update(threshold="high"),
    ],
    ids=[
        "short column",
        "other events",
        "score above 1",
        "NaN score",
        "reason not text",
        "no version",
        "threshold",
    ],
)
def test_a_malformed_binary_answer_is_refused(spoil: Any) -> None:
    items = _items(3)
    answer = msgpack.unpackb(encode_response(_answer(items, False), "m-1", 0.25, None))
    spoil(answer)
    with pytest.raises(MalformedAnswer):
        parse_binary_results(msgpack.packb(answer), items)
    with pytest.raises(MalformedAnswer):
        parse_binary_results(b'{"results": []}', items)


class _Refuses415(BaseHTTPRequestHandler):
    """A service that predates the binary body: 415 for anything but JSON."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.headers["Content-Type"])
        answer = b'{"detail": "unsupported Content-Type"}'
        self.send_response(415)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses415)
    server.daemon_threads = True
    # A short poll: shutdown() waits for the loop to look, 0.5 s per test by default.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_service_refusing_the_binary_type_is_a_clear_error_not_a_silent_json_retry(
    refusing_service: str,
) -> None:
    _Refuses415.seen.clear()
    scorer = BatchScorer(refusing_service, "key-1", timeout_s=5, retries=2, backoff_s=0)
    txn = transaction()
    with pytest.raises(ConfigError, match="415") as refused:
        scorer.score([(txn, dict.fromkeys(FEATURE_NAMES, 1.0))])
    scorer.close()
    assert MSGPACK in str(refused.value) and "json" in str(refused.value)
    assert _Refuses415.seen == [MSGPACK]  # one request, never resent as JSON


def test_an_unknown_encoding_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="encoding"):
        BatchScorer("http://127.0.0.1:9", "key-1", encoding="xml")  # type: ignore[arg-type]


def test_the_real_service_gives_binary_and_json_clients_identical_results(scoring_service: Any) -> None:
    from fraud_core.simulator import SimConfig, Simulator
    from inference_service.training.train import replay

    sim = Simulator(SimConfig(seed=21, n_users=300))
    events = list(sim.events(count=400))
    data = replay(events, sim.profiles())
    pairs = [
        (ev.txn, dict(zip(FEATURE_NAMES, row, strict=True)))
        for ev, row in zip(events[-64:], data.x[-64:].tolist(), strict=True)
    ]
    binary = BatchScorer(scoring_service.url, scoring_service.api_key, timeout_s=10, retries=0)
    as_json = BatchScorer(
        scoring_service.url, scoring_service.api_key, timeout_s=10, retries=0, encoding="json"
    )
    try:
        by_binary = binary.score(pairs, correlation_id="binary-1")
        by_json = as_json.score(pairs, correlation_id="json-1")
    finally:
        binary.close()
        as_json.close()
    assert not any(r.degraded for r in by_binary)
    assert by_binary == by_json
    assert len({r.score for r in by_binary}) > 1
