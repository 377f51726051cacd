"""The producer against the real local stack (session fixtures in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer

import schemas
from fraud_core.enrichment import profile_key
from fraud_core.exceptions import SerializationError
from fraud_core.features import Profile
from fraud_core.simulator import SimConfig, SimEvent, Simulator
from producers.avro_file import read_stream
from producers.publish import produce_events
from producers.settings import ProducerSettings
from tests.actions.action_helpers import record_count

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def settings_for(stack: Any) -> ProducerSettings:
    return ProducerSettings(
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        SCHEMA_REGISTRY_URL=stack.registry_url,
        REDIS_URL=stack.redis_url,
    )


def consume(stack: Any, topic: str, schema: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Read ``expected`` records from the start of ``topic``, decoded through the registry."""
    consumer = DeserializingConsumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "key.deserializer": StringDeserializer("utf_8"),
            "value.deserializer": AvroDeserializer(
                SchemaRegistryClient({"url": stack.registry_url}), schemas.load_text(schema)
            ),
        }
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
        extra = consumer.poll(1.0)  # nothing beyond what was produced
        assert extra is None, f"unexpected extra record on {topic}"
    finally:
        consumer.close()
    return out


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers.produce", "--no-progress", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ten_thousand_events_round_trip(stack: Any, make_topic: Callable[..., str]) -> None:
    topic = make_topic("payments.initiated")
    labels_topic = make_topic("payments.labels", schema=schemas.LABEL)
    events = list(Simulator(SimConfig(seed=21, n_users=500)).events(count=10_000))

    summary = produce_events(settings_for(stack), events, 0, topic=topic, labels_topic=labels_topic)

    assert (summary.events, summary.labels, summary.delivered, summary.errors) == (10_000, 10_000, 20_000, 0)
    truth = {e.txn.event_id: e for e in events}
    received = consume(stack, topic, schemas.TRANSACTION, 10_000)
    assert len(received) == 10_000
    correlation: dict[str, bytes] = {}
    for msg in received:
        value = msg.value()
        event = truth[str(value["event_id"])]
        assert msg.key() == event.txn.user_id == value["user_id"]
        assert value["amount_minor"] == event.txn.amount_minor and value["card_id"] == event.txn.card_id
        headers = dict(msg.headers())
        assert re.fullmatch(rb"[0-9a-f]{32}", headers["correlation_id"])
        assert TRACEPARENT.match(headers["traceparent"].decode())
        correlation[event.txn.event_id] = headers["correlation_id"]
    assert set(correlation) == set(truth)

    labels = consume(stack, labels_topic, schemas.LABEL, 10_000)
    assert len(labels) == 10_000
    for msg in labels:
        label = msg.value()
        event = truth[str(label["event_id"])]
        assert msg.key() == event.txn.user_id
        assert (label["is_fraud"], label["fraud_type"]) == (event.is_fraud, event.fraud_type)
        assert dict(msg.headers())["correlation_id"] == correlation[event.txn.event_id]
    assert summary.fraud == sum(e.is_fraud for e in events) > 0


def test_cli_file_profiles_and_replay(stack: Any, make_topic: Callable[..., str], tmp_path: Path) -> None:
    topic = make_topic("payments.initiated")
    labels_topic = make_topic("payments.labels", schema=schemas.LABEL)
    replay_topic = make_topic("payments.initiated")
    path = tmp_path / "stream.avro"
    redis_url = stack.redis_url.rsplit("/", 1)[0] + "/9"  # a db of its own: other tests seed profiles too
    common = [
        "--bootstrap-servers",
        stack.bootstrap,
        "--registry-url",
        stack.registry_url,
        "--redis-url",
        redis_url,
    ]

    stream = ["--count", "300", "--rate", "0", "--seed", "5", "--users", "50", "--label-delay-s", "1"]
    files = ["--avro-file", str(path), "--seed-profiles"]
    first = run_cli(*common, "--topic", topic, "--labels-topic", labels_topic, *stream, *files)

    assert first.returncode == 0, first.stderr
    assert re.search(r"events sent\s+300\b", first.stdout) and re.search(r"errors\s+0\b", first.stdout)
    written = list(read_stream(path))
    assert written == list(Simulator(SimConfig(seed=5, n_users=50)).events(count=300))
    assert len(consume(stack, labels_topic, schemas.LABEL, 300)) == 300
    client = redis.Redis.from_url(redis_url)
    profiles = Simulator(SimConfig(seed=5, n_users=50)).profiles()
    user_id = sorted(profiles)[7]  # users without a profile (SCENARIOS.md) have none stored
    stored = client.get(profile_key(user_id))
    assert stored is not None and Profile.from_mapping(json.loads(stored)) == profiles[user_id]

    replay = run_cli(
        *common, "--replay-file", str(path), "--speed", "0", "--topic", replay_topic, "--labels-topic", ""
    )

    assert replay.returncode == 0, replay.stderr
    replayed = consume(stack, replay_topic, schemas.TRANSACTION, 300)
    assert len(replayed) == 300
    # Same events, and each user's events in their original order (one user = one partition).
    order: dict[str, list[str]] = {}
    for m in replayed:
        order.setdefault(m.key(), []).append(str(m.value()["event_id"]))
    expected: dict[str, list[str]] = {}
    for e in written:
        expected.setdefault(e.txn.user_id, []).append(e.txn.event_id)
    assert order == expected


def test_unknown_topic_is_a_clear_error(stack: Any) -> None:
    common = ["--bootstrap-servers", stack.bootstrap, "--registry-url", stack.registry_url]
    result = run_cli(
        *common, "--topic", f"missing.{uuid.uuid4().hex[:8]}", "--labels-topic", "", "--count", "5"
    )
    assert result.returncode == 1
    assert "missing." in result.stderr and "make up" in result.stderr


def test_record_not_fitting_the_schema_names_field_and_value(
    stack: Any, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("payments.initiated")
    good = next(iter(Simulator(SimConfig(n_users=20)).events(count=1)))
    bad = SimEvent(replace(good.txn, amount_minor="12.50"), False, None)  # type: ignore[arg-type]

    with pytest.raises(SerializationError, match=r"'amount_minor'='12\.50'"):
        produce_events(settings_for(stack), [good, bad], 0, topic=topic, labels_topic=None)

    wrong_channel = SimEvent(replace(good.txn, channel="CARRIER_PIGEON"), False, None)
    with pytest.raises(SerializationError, match=r"'channel'='CARRIER_PIGEON'"):
        produce_events(settings_for(stack), [wrong_channel], 0, topic=topic, labels_topic=None)


def test_ctrl_c_flushes_prints_summary_and_exits_130(stack: Any, make_topic: Callable[..., str]) -> None:
    topic = make_topic("payments.initiated")
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers.produce", "--no-progress", "--bootstrap-servers", stack.bootstrap,
         "--registry-url", stack.registry_url, "--topic", topic, "--labels-topic", "", "--rate", "200",
         "--count", "100000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60  # start-up (imports, registry and topic checks), then some sending
    while record_count(stack, topic) == 0:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the producer sent nothing in 60 s"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    sent = int(re.search(r"events sent\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    assert 0 < sent < 100_000 and "interrupted" in out
    assert re.search(r"errors\s+0\b", out)
    assert len(consume(stack, topic, schemas.TRANSACTION, sent)) == sent
