"""The registry proxy of docker-compose.yml (deploy/compose/registry_proxy.py): who may do what.

Unit tier: the rules, and the app in front of a fake registry (``fake_registry``, an httpx mock
transport that records what reaches it). The integration case puts the proxy, as a real HTTP server,
in front of the session stack's real Apicurio and drives it with the pipeline's own ``RegistryClient``.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.testclient import TestClient

import schemas
from deploy.compose.registry_proxy import ProxySettings, create_app, is_read, is_writer
from deploy.local.stack import free_port
from fraud_core.exceptions import RegistryUnavailable
from fraud_core.registry import RegistryClient
from fraud_core.topics import COMPATIBILITY

WRITER = "fraud_bootstrap"
PASSWORD = secrets.token_urlsafe(24)
CCOMPAT = "/apis/ccompat/v7"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{CCOMPAT}/subjects"),
        ("GET", f"{CCOMPAT}/schemas/ids/1"),
        ("HEAD", f"{CCOMPAT}/config"),
        ("POST", f"{CCOMPAT}/subjects/payments.initiated-value"),  # id lookup: every producer's call
        ("POST", f"{CCOMPAT}/compatibility/subjects/payments.labels-value/versions/latest"),
        ("POST", f"{CCOMPAT}/compatibility/subjects/payments.labels-value/versions"),
    ],
)
def test_reads_are_open(method: str, path: str) -> None:
    assert is_read(method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{CCOMPAT}/subjects/payments.initiated-value/versions"),  # register
        ("PUT", f"{CCOMPAT}/config"),  # lower the global compatibility
        ("PUT", f"{CCOMPAT}/config/payments.initiated-value"),
        ("DELETE", f"{CCOMPAT}/subjects/payments.initiated-value"),
        ("DELETE", f"{CCOMPAT}/config"),
        ("PUT", f"{CCOMPAT}/mode"),
        ("POST", "/apis/registry/v3/groups/default/artifacts"),
        ("POST", "/apis/registry/v3/admin/import"),
        ("PATCH", f"{CCOMPAT}/subjects/x"),
        ("OPTIONS", f"{CCOMPAT}/subjects/x"),
        # A register hidden in a path that looks like a lookup.
        ("POST", f"{CCOMPAT}/subjects/x%2Fversions"),
        ("POST", f"{CCOMPAT}/subjects/x/../x/versions"),
        ("POST", f"{CCOMPAT}/subjects/x/versions/"),
        ("POST", f"{CCOMPAT}//subjects/x/versions"),
        ("POST", f"{CCOMPAT}/subjects/x;/versions"),
        ("post", f"{CCOMPAT}/subjects/x"),
    ],
)
def test_writes_are_not_reads(method: str, path: str) -> None:
    assert not is_read(method, path)


def test_only_the_writers_basic_credentials_count() -> None:
    secret = SecretStr(PASSWORD)
    assert is_writer(basic(WRITER, PASSWORD)["Authorization"], WRITER, secret)
    assert is_writer("basic " + basic(WRITER, PASSWORD)["Authorization"].split()[1], WRITER, secret)
    refused = [
        None,
        "",
        basic(WRITER, PASSWORD + "x")["Authorization"],
        basic(WRITER, "")["Authorization"],
        basic("fraud_console", PASSWORD)["Authorization"],
        "Basic " + base64.b64encode(f"{WRITER}{PASSWORD}".encode()).decode(),  # no colon
        "Basic not-base64!",
        f"Bearer {PASSWORD}",
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ]
    for header in refused:
        assert not is_writer(header, WRITER, secret), header


class FakeRegistry:
    """What reached the registry behind the proxy."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"id": 7}, headers={"X-Upstream": "yes"})


@pytest.fixture
def fake_registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def proxy(fake_registry: FakeRegistry) -> Iterator[TestClient]:
    settings = ProxySettings(
        REGISTRY_UPSTREAM_URL="http://registry.invalid:8080", REGISTRY_WRITER_PASSWORD=SecretStr(PASSWORD)
    )
    with TestClient(create_app(settings, transport=httpx.MockTransport(fake_registry))) as client:
        yield client


def test_a_write_without_credentials_never_reaches_the_registry(
    proxy: TestClient, fake_registry: FakeRegistry
) -> None:
    body = {"compatibility": "NONE"}
    for headers in ({}, basic(WRITER, "wrong-" + PASSWORD), {"X-HTTP-Method-Override": "GET"}):
        answer = proxy.put(f"{CCOMPAT}/config", json=body, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    answer = proxy.post(f"{CCOMPAT}/subjects/s-value/versions", json={"schema": "{}"})
    assert answer.status_code == 401
    assert fake_registry.requests == []


def test_the_writer_is_forwarded_without_its_credentials(
    proxy: TestClient, fake_registry: FakeRegistry
) -> None:
    answer = proxy.put(
        f"{CCOMPAT}/config/s-value?x=1",
        json={"compatibility": COMPATIBILITY},
        headers={**basic(WRITER, PASSWORD), "X-HTTP-Method-Override": "DELETE"},
    )
    assert answer.status_code == 200 and answer.json() == {"id": 7}
    assert answer.headers["X-Upstream"] == "yes"
    [sent] = fake_registry.requests
    assert (sent.method, str(sent.url)) == (
        "PUT",
        "http://registry.invalid:8080/apis/ccompat/v7/config/s-value?x=1",
    )
    assert json.loads(sent.content) == {"compatibility": COMPATIBILITY}
    assert "authorization" not in sent.headers and "x-http-method-override" not in sent.headers


def test_reads_pass_for_everyone_with_the_path_unchanged(
    proxy: TestClient, fake_registry: FakeRegistry
) -> None:
    assert proxy.get(f"{CCOMPAT}/schemas/ids/3").status_code == 200
    assert proxy.post(f"{CCOMPAT}/subjects/payments.flagged-value", json={"schema": "{}"}).status_code == 200
    # Percent-encoding reaches the registry as sent: what it routes is what the proxy judged.
    assert proxy.get(f"{CCOMPAT}/subjects/a%2Fb/versions").status_code == 200
    assert [(r.method, r.url.raw_path) for r in fake_registry.requests] == [
        ("GET", b"/apis/ccompat/v7/schemas/ids/3"),
        ("POST", b"/apis/ccompat/v7/subjects/payments.flagged-value"),
        ("GET", b"/apis/ccompat/v7/subjects/a%2Fb/versions"),
    ]


def test_an_unreachable_registry_is_a_502() -> None:
    settings = ProxySettings(
        REGISTRY_UPSTREAM_URL="http://127.0.0.1:1", REGISTRY_WRITER_PASSWORD=SecretStr(PASSWORD)
    )
    with TestClient(create_app(settings)) as client:
        answer = client.get(f"{CCOMPAT}/subjects")
    assert answer.status_code == 502 and "unreachable" in answer.text


def test_a_short_writer_password_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="REGISTRY_WRITER_PASSWORD"):
        ProxySettings(REGISTRY_WRITER_PASSWORD=SecretStr("short"))


@pytest.mark.integration
def test_in_front_of_the_real_registry_only_the_writer_registers(stack, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The proxy as an HTTP server before the session's Apicurio: the pipeline's RegistryClient can
    look ids up through it without credentials but can neither register nor lower compatibility;
    with the writer's password from a netrc file (as the compose init job sends it) it can."""
    upstream = stack.registry_url.split("/apis/", 1)[0]
    port = free_port()
    settings = ProxySettings(
        REGISTRY_UPSTREAM_URL=upstream, REGISTRY_WRITER_PASSWORD=SecretStr(PASSWORD), PROXY_PORT=port
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
            assert thread.is_alive(), "the proxy did not start"
        through_proxy = f"http://127.0.0.1:{port}{CCOMPAT}"
        subject = f"proxy.{uuid.uuid4().hex[:10]}-value"
        text = schemas.load_text(schemas.LABEL)
        anonymous = RegistryClient(through_proxy, read_retry_backoff_s=())
        with pytest.raises(RegistryUnavailable, match="401"):
            anonymous.register(subject, text)
        with pytest.raises(RegistryUnavailable, match="401"):
            anonymous.set_compatibility("NONE")
        assert subject not in RegistryClient(stack.registry_url).subjects()
        assert RegistryClient(stack.registry_url).get_compatibility() == COMPATIBILITY

        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login {WRITER} password {PASSWORD}\n")
        monkeypatch.setenv("NETRC", str(netrc))
        writer = RegistryClient(through_proxy, read_retry_backoff_s=())
        schema_id = writer.register(subject, text)
        writer.set_compatibility(COMPATIBILITY, subject)

        monkeypatch.delenv("NETRC")
        assert anonymous.lookup_id(subject, text) == schema_id
        assert anonymous.parsed_schema(schema_id)["name"].endswith("Label")
        assert anonymous.get_compatibility(subject) == COMPATIBILITY
    finally:
        server.should_exit = True
        thread.join(10)
