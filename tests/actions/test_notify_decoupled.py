"""A notification never holds up blocking (issue 24 §1), against the real stack and a real webhook.

A flagged decision whose ``correlation_id`` header carries CR/LF, and a webhook answering 500 for a
minute: the later decisions on that partition are still acted on (blocks, holds, cases, profile
updates) while the webhook fails, the bad header never reaches the HTTP call, and the notifications
are delivered once the webhook is back, or dead-lettered after their last attempt.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

import schemas
from actions.consumer import ActionConsumer
from actions.notify import WebhookNotifier
from actions.outbox import DUE_KEY, item_key
from actions.settings import ConsumerSettings
from deploy.local.stack import free_port
from fraud_core.enrichment import blocklist_key, profile_key
from fraud_core.review_cases import case_key
from tests.actions.action_helpers import Topics, consumed, decision, drain, encode_decision, read_all, sample

pytestmark = pytest.mark.integration

VALID_TRACE = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SAFE = re.compile(r"[A-Za-z0-9._:/+=@~-]+")


@dataclass
class Hook:
    """A webhook that answers 500 until ``fail_until`` (monotonic), then 204; keeps every call."""

    url: str = ""
    fail_until: float = float("inf")
    calls: list[tuple[int, str | None, dict[str, Any]]] = field(default_factory=list)

    def failing(self) -> bool:
        return time.monotonic() < self.fail_until

    def delivered(self) -> set[str]:
        return {body["event_id"] for status, _, body in self.calls if status == 204}


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = 500 if state.failing() else 204
            state.calls.append((status, self.headers.get("correlation-id"), body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def r(stack: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def produce_to_partition_0(stack: Any, topic: str, items: list[tuple[dict[str, Any], list[Any]]]) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    for record, headers in items:
        value = encode_decision(stack, topic, record)
        producer.produce(topic, value, record["user_id"].encode(), partition=0, headers=headers)
    assert producer.flush(30) == 0


def headers(cid: str) -> list[tuple[str, bytes]]:
    return [("correlation_id", cid.encode()), ("traceparent", VALID_TRACE)]


def test_a_bad_header_and_a_failing_webhook_never_hold_up_the_partitions_effects(
    stack: Any,
    topics: Topics,
    settings: ConsumerSettings,
    hook: Hook,
    r: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The webhook fails until the test brings it back (not for a fixed minute): the effects must
    # all land while it fails, however long that takes on a loaded machine.
    hook.fail_until = float("inf")
    poisoned = decision("FLAGGED")
    blocks = [decision("FLAGGED") for _ in range(5)]
    reviews = [decision("FLAGGED", action="REVIEW", score=0.7) for _ in range(5)]
    approvals = [decision("APPROVED") for _ in range(5)]
    later = [x for trio in zip(blocks, reviews, approvals, strict=True) for x in trio]
    produce_to_partition_0(
        stack,
        topics.flagged,
        [(poisoned, [("correlation_id", b"x\r\ny"), ("traceparent", VALID_TRACE)])]
        + [(rec, headers(f"cid-{rec['event_id']}")) for rec in later],
    )
    tuned = settings.model_copy(
        update={"NOTIFY_RETRY_BASE_S": 0.5, "NOTIFY_RETRY_MAX_S": 2.0, "NOTIFY_MAX_ATTEMPTS": 1000}
    )
    consumer = ActionConsumer(tuned, notifier=WebhookNotifier(hook.url, timeout_s=2))

    def acted_on() -> bool:
        return (
            all(r.exists(blocklist_key(rec["card_id"])) for rec in [poisoned, *blocks])
            and all(r.exists(case_key(rec["event_id"])) for rec in reviews)
            and all(r.exists(profile_key(rec["user_id"])) for rec in approvals)
        )

    flagged_ids = {rec["event_id"] for rec in [poisoned, *blocks, *reviews]}
    try:
        with caplog.at_level(logging.WARNING, logger="fraud_core.kafka.headers"):
            drain(consumer, lambda: acted_on() and any(s == 500 for s, _, _ in hook.calls), timeout_s=30)
        # Every effect landed while the webhook was failing (and had failed).
        assert consumed(consumer) == 1 + len(later)
        assert not hook.delivered()
        # Once it is back, the retry path delivers every notification.
        hook.fail_until = time.monotonic()
        drain(consumer, lambda: hook.delivered() >= flagged_ids, timeout_s=60)
    finally:
        consumer.close()

    assert sample(consumer, "fraud_actions_transient_failures_total", error="NotifyError") == 0
    assert sample(consumer, "fraud_actions_notifications_total", outcome="retried") >= 1
    # The CR/LF never reached an HTTP header: every call carried a safe correlation id, and the
    # poisoned event's was replaced by a fresh one, logged with the refused bytes escaped.
    assert all(cid is not None and SAFE.fullmatch(cid) for _, cid, _ in hook.calls)
    [fresh] = {
        body["correlation_id"] for _, _, body in hook.calls if body["event_id"] == poisoned["event_id"]
    }
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    logged = [rec.getMessage() for rec in caplog.records]
    assert any("b'x\\r\\ny'" in line and fresh in line for line in logged), logged
    assert not any("\r" in line or "\n" in line for line in logged)
    assert r.zscore(DUE_KEY, poisoned["event_id"]) is None


def test_a_notification_that_keeps_failing_becomes_a_dead_letter(
    stack: Any, topics: Topics, settings: ConsumerSettings, hook: Hook, r: redis.Redis
) -> None:
    flagged = decision("FLAGGED")
    produce_to_partition_0(stack, topics.flagged, [(flagged, headers(f"cid-{flagged['event_id']}"))])
    tuned = settings.model_copy(update={"NOTIFY_RETRY_BASE_S": 0.05, "NOTIFY_MAX_ATTEMPTS": 3})
    consumer = ActionConsumer(tuned, notifier=WebhookNotifier(hook.url, timeout_s=2))
    try:
        drain(
            consumer,
            lambda: sample(consumer, "fraud_actions_notifications_total", outcome="dead_lettered") == 1,
        )
    finally:
        consumer.close()

    assert r.exists(blocklist_key(flagged["card_id"]))
    assert len(hook.calls) == 3 and {status for status, _, _ in hook.calls} == {500}
    [(msg, letter)] = read_all(stack, topics.dlq, schemas.DEAD_LETTER)
    assert letter["error_type"] == "NOTIFY_FAILED" and letter["stage"] == "action-notifier"
    assert letter["source_topic"] == topics.flagged and letter["source_partition"] == 0
    assert letter["value"] == encode_decision(stack, topics.flagged, flagged)
    assert letter["correlation_id"] == f"cid-{flagged['event_id']}"
    assert "HTTP 500" in letter["error_message"] and msg.key() == flagged["user_id"].encode()
    assert r.zscore(DUE_KEY, flagged["event_id"]) is None and not r.exists(item_key(flagged["event_id"]))
