"""The webhook notifier against a real local HTTP server (no services of the stack needed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from actions.exceptions import NotifyError
from actions.notify import WebhookNotifier
from deploy.local.stack import free_port


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, Any], str | None]] = []
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((json.loads(body), self.headers.get("correlation-id")))
        self.send_response(Receiver.status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    Receiver.status = 204
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    # A short poll interval: shutdown() waits for the loop's next poll (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_posts_json_with_correlation_header(receiver: str) -> None:
    WebhookNotifier(receiver).notify({"event_id": "e1"}, {"correlation-id": "cid-1"})
    assert Receiver.received == [({"event_id": "e1"}, "cid-1")]


def test_server_error_is_retryable_and_client_error_is_not(receiver: str) -> None:
    Receiver.status = 503
    with pytest.raises(NotifyError, match="HTTP 503"):
        WebhookNotifier(receiver).notify({"event_id": "e2"}, {})
    Receiver.status = 400
    WebhookNotifier(receiver).notify({"event_id": "e3"}, {})  # refused for good: logged, not retried
    assert len(Receiver.received) == 2


def test_unreachable_webhook_is_retryable() -> None:
    with pytest.raises(NotifyError, match="unreachable"):
        WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", timeout_s=2).notify({}, {})
