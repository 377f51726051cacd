"""Typed registry errors against the real Apicurio Registry: a schema id the registry does not know
is the record's fault (a dead letter), an unreachable registry is an outage (never a dead letter).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

import schemas
from deploy.local.stack import Stack
from fraud_core import avro
from fraud_core.exceptions import DecodeError, RegistryError, RegistryUnavailable, SchemaNotFound
from fraud_core.registry import RegistryClient
from fraud_core.simulator import SimConfig, Simulator

pytestmark = pytest.mark.integration

FAST = (0.05, 0.05)


def _framed(schema_id: int) -> bytes:
    txn = next(Simulator(SimConfig(seed=5, n_users=3)).events(count=1)).txn
    return avro.encode(schema_id, schemas.load(schemas.TRANSACTION), txn.to_record())


def test_an_unknown_schema_id_is_a_bad_record(stack) -> None:  # type: ignore[no-untyped-def]
    client = RegistryClient(stack.registry_url, read_retry_backoff_s=FAST)
    with pytest.raises(SchemaNotFound):
        client.parsed_schema(987_654_321)
    with pytest.raises(DecodeError) as info:
        avro.decode(_framed(987_654_321), client.parsed_schema)
    assert info.value.error_type == "UNKNOWN_SCHEMA_ID"


def test_a_stopped_registry_is_an_outage_and_decoding_resumes_after_it(stack, make_topic) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("registry-outage")
    schema_id = RegistryClient(stack.registry_url).lookup_id(
        f"{topic}-value", schemas.load_text(schemas.TRANSACTION)
    )
    value = _framed(schema_id)
    services = Stack(stack.config)
    registry = next(s for s in services.services if s.name == "registry")
    fresh = RegistryClient(stack.registry_url, read_retry_backoff_s=FAST)  # nothing cached yet
    services.stop(registry)
    try:
        with pytest.raises(RegistryUnavailable):
            avro.decode(value, fresh.parsed_schema)
    finally:
        services.start(registry)
    assert avro.decode(value, fresh.parsed_schema)["user_id"]


class _Answers(http.server.BaseHTTPRequestHandler):
    """A fake registry for the status mapping only: answers every GET with ``status``."""

    status = 503

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_registry() -> Iterator[tuple[str, type[_Answers]]]:
    handler = type("Handler", (_Answers,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, RegistryUnavailable),
        (500, RegistryUnavailable),
        (429, RegistryUnavailable),
        (401, RegistryUnavailable),
        (404, SchemaNotFound),
        (400, RegistryError),
    ],
)
def test_http_statuses_map_to_typed_errors(
    fake_registry: tuple[str, type[_Answers]], status: int, error: type[RegistryError]
) -> None:
    url, handler = fake_registry
    handler.status = status
    with pytest.raises(error) as info:
        RegistryClient(url, read_retry_backoff_s=FAST).parsed_schema(1)
    assert type(info.value) is error
    assert f"HTTP {status}" in str(info.value)


def test_a_5xx_is_retried_and_never_a_dead_letter(fake_registry: tuple[str, type[_Answers]]) -> None:
    url, handler = fake_registry
    handler.status = 502
    with pytest.raises(RegistryUnavailable):
        avro.decode(_framed(7), RegistryClient(url, read_retry_backoff_s=FAST).parsed_schema)


def test_a_schema_derived_from_ours_leaves_ours_unchanged() -> None:
    derived = schemas.load_json(schemas.TRANSACTION)
    derived["fields"].append({"name": "promo_code", "type": ["null", "string"], "default": None})
    assert "promo_code" not in schemas.load_text(schemas.TRANSACTION)
