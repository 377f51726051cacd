"""The action consumers against the real local stack (session fixtures in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import schemas
from actions.consumer import ActionConsumer
from actions.settings import ConsumerSettings
from deploy.local.stack import free_port
from fraud_core.action_logic import audit_records, parse_decision
from fraud_core.action_store import ActionStore, marker_key
from fraud_core.enrichment import blocklist_key, profile_key
from fraud_core.features import Profile
from tests.actions.action_helpers import (
    T0,
    RecordingNotifier,
    Topics,
    consumed,
    decision,
    drain,
    encode_decision,
    headers_for,
    produce_decisions,
    produce_raw,
    read_all,
    record_count,
    sample,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def r(stack: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def seed(r: redis.Redis, user_id: str, profile: Profile) -> None:
    r.set(profile_key(user_id), json.dumps(profile.to_mapping()))


def profile_of(r: redis.Redis, user_id: str) -> Profile:
    raw = r.get(profile_key(user_id))
    assert raw is not None, f"no profile for {user_id}"
    return Profile.from_mapping(json.loads(raw))


def make_consumer(settings: ConsumerSettings, notifier: RecordingNotifier | None = None) -> ActionConsumer:
    return ActionConsumer(settings, notifier=notifier or RecordingNotifier())


def test_flagged_blocks_card_raises_risk_notifies_and_audits(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    flagged = decision("FLAGGED")
    seed(r, flagged["user_id"], Profile(avg_amount=15.0, home_country="DE", risk_tier=1, txn_count=9))
    produce_decisions(stack, topics.flagged, [flagged])
    notifier = RecordingNotifier()
    consumer = make_consumer(settings, notifier)
    try:
        drain(consumer, lambda: consumed(consumer) >= 1 and len(notifier.sent) >= 1)
    finally:
        consumer.close()

    ttl = r.ttl(blocklist_key(flagged["card_id"]))
    assert 0 < ttl <= settings.BLOCK_TTL_S
    assert profile_of(r, flagged["user_id"]).effective_tier == 2
    [(payload, http_headers)] = notifier.sent
    assert payload["event_id"] == flagged["event_id"] and payload["card"].startswith("****")
    assert http_headers["correlation-id"] == f"cid-{flagged['event_id']}"

    audits = read_all(stack, topics.actions, schemas.ACTION)
    assert sorted(rec["action"] for _, rec in audits) == ["BLOCK_CARD", "NOTIFY", "RAISE_RISK_TIER"]
    for msg, rec in audits:
        assert rec["action_id"] == f"{flagged['event_id']}:{rec['action']}"
        assert msg.key() == flagged["user_id"].encode()
        headers = dict(msg.headers())
        assert headers["correlation_id"] == f"cid-{flagged['event_id']}".encode()
        assert headers["traceparent"].startswith(b"00-")
    assert sample(consumer, "fraud_actions_taken_total", action="BLOCK_CARD") == 1
    # Decision to action: observed once, from the decision's decided_at (T0 + 3: long ago).
    assert sample(consumer, "fraud_actions_decision_delay_seconds_count") == 1
    assert sample(consumer, "fraud_actions_decision_delay_seconds_sum") > 3600


def test_the_same_decision_delivered_twice_acts_once(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    flagged = decision("FLAGGED")
    approved = decision("APPROVED")
    seed(r, flagged["user_id"], Profile(home_country="DE", risk_tier=0, txn_count=1, avg_amount=10.0))
    seed(r, approved["user_id"], Profile(home_country="DE", txn_count=1, avg_amount=10.0))
    # Twice back to back (same batch), then a third copy after the first ones were committed.
    produce_decisions(stack, topics.flagged, [flagged], copies=2)
    produce_decisions(stack, topics.approved, [approved], copies=2)
    notifier = RecordingNotifier()
    consumer = make_consumer(settings, notifier)
    try:
        drain(consumer, lambda: consumed(consumer) >= 4 and len(notifier.sent) >= 1)
        produce_decisions(stack, topics.flagged, [flagged])
        produce_decisions(stack, topics.approved, [approved])
        drain(consumer, lambda: consumed(consumer) >= 6)
    finally:
        consumer.close()

    assert profile_of(r, flagged["user_id"]).effective_tier == 1
    learnt = profile_of(r, approved["user_id"])
    assert learnt.txn_count == 2 and learnt.seen_avg_amount == pytest.approx(15.0)
    assert len(notifier.sent) == 1
    assert record_count(stack, topics.actions) == 4  # three for the flagged one, one UPDATE_PROFILE
    assert sample(consumer, "fraud_actions_duplicates_skipped_total", topic=topics.flagged) == 2
    assert sample(consumer, "fraud_actions_duplicates_skipped_total", topic=topics.approved) == 2
    assert r.get(marker_key(flagged["event_id"])) == b"done"


def test_one_event_decided_twice_differently_acts_on_the_first_decision_only(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    """At-least-once replay after a job crash can decide one event twice, once per topic (Redis
    changed in between). The consumers act on whichever decision they see first, once."""
    approved = decision("APPROVED")
    flagged = {**approved, "decision": "FLAGGED", "score": 0.97, "reasons": ["unusually large amount"]}
    seed(r, approved["user_id"], Profile(home_country="DE", risk_tier=0, txn_count=1, avg_amount=10.0))
    produce_decisions(stack, topics.approved, [approved])
    consumer = make_consumer(settings)
    try:
        drain(consumer, lambda: consumed(consumer) >= 1)
        produce_decisions(stack, topics.flagged, [flagged])
        drain(consumer, lambda: consumed(consumer) >= 2)
    finally:
        consumer.close()

    profile = profile_of(r, approved["user_id"])
    assert (profile.txn_count, profile.effective_tier) == (2, 0)  # learnt once, never raised
    assert r.get(blocklist_key(approved["card_id"])) is None
    assert sample(consumer, "fraud_actions_duplicates_skipped_total", topic=topics.flagged) == 1
    assert record_count(stack, topics.actions) == 1  # the one UPDATE_PROFILE


def test_approved_decisions_teach_the_profile(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    known = decision("APPROVED", amount_minor=5000, country="FR", device_id="dev_new")
    seed(r, known["user_id"], Profile(avg_amount=20.0, home_country="DE", countries=("DE",), txn_count=4))
    newcomer = decision("APPROVED", amount_minor=10_000, currency="USD", country="PL")
    produce_decisions(stack, topics.approved, [known, newcomer])
    consumer = make_consumer(settings)
    try:
        drain(consumer, lambda: consumed(consumer) >= 2)
    finally:
        consumer.close()

    learnt = profile_of(r, known["user_id"])
    assert learnt.seen_avg_amount == pytest.approx((20.0 * 4 + 50.0) / 5)
    assert learnt.txn_count == 5
    assert learnt.seen_devices == ("dev_new",)
    assert (learnt.avg_amount, learnt.devices, learnt.enrolled) == (20.0, (), True)  # enrolment kept
    assert learnt.countries == ("DE", "FR")
    started = profile_of(r, newcomer["user_id"])
    assert started.home_country == "PL" and started.account_created_ms == T0
    assert started.seen_avg_amount == pytest.approx(92.0) and started.txn_count == 1
    assert started.seen_devices == (newcomer["device_id"],) and started.effective_tier == 0
    assert not started.enrolled  # the features still read this user as without a profile


def test_poison_messages_go_to_the_dlq_and_the_consumer_keeps_going(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    good = decision("FLAGGED")
    valid_bytes = encode_decision(stack, topics.flagged, decision("FLAGGED"))
    invalid_field = encode_decision(stack, topics.flagged, decision("FLAGGED", card_id=""))
    poison = {
        "BAD_MAGIC_BYTE": b"\x01" + valid_bytes[1:],
        "UNKNOWN_SCHEMA_ID": b"\x00" + struct.pack(">I", 987_654) + valid_bytes[5:],
        "TRUNCATED": b"\x00\x00",
        "AVRO_DECODE": valid_bytes[:5] + b"\xff\xff\xff",
        "EMPTY_VALUE": None,
        "VALIDATION": invalid_field,
    }
    items = [(b"poison-key", value, headers_for(f"cid-{kind}")) for kind, value in poison.items()]
    produce_raw(stack, topics.flagged, items)
    produce_decisions(stack, topics.flagged, [good])
    consumer = make_consumer(settings)
    try:
        drain(consumer, lambda: consumed(consumer) >= len(poison) + 1)
    finally:
        consumer.close()

    assert r.exists(blocklist_key(good["card_id"]))  # the good record behind the poison was acted on
    letters = {
        rec["correlation_id"]: (msg, rec) for msg, rec in read_all(stack, topics.dlq, schemas.DEAD_LETTER)
    }
    assert len(letters) == len(poison)
    for kind, value in poison.items():
        msg, rec = letters[f"cid-{kind}"]
        assert rec["error_type"] == kind
        assert rec["value"] == value and rec["key"] == b"poison-key"
        assert rec["source_topic"] == topics.flagged and rec["stage"] == "action-consumer"
        assert rec["error_message"]
        assert dict(msg.headers())["correlation_id"] == f"cid-{kind}".encode()
    assert "card_id" in letters["cid-VALIDATION"][1]["error_message"]
    assert sample(consumer, "fraud_actions_dead_letters_total", error_type="BAD_MAGIC_BYTE") == 1
    assert record_count(stack, topics.actions) == 3  # only the good record was audited


def test_offsets_are_committed_after_acting_so_a_restart_reapplies_nothing(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    first = [decision("APPROVED") for _ in range(5)]
    produce_decisions(stack, topics.approved, first)
    consumer = make_consumer(settings)
    try:
        drain(consumer, lambda: consumed(consumer) >= 5)
    finally:
        consumer.close()

    later = decision("APPROVED")
    produce_decisions(stack, topics.approved, [later])
    restarted = make_consumer(settings)
    try:
        drain(restarted, lambda: consumed(restarted) >= 1 and r.exists(profile_key(later["user_id"])) == 1)
    finally:
        restarted.close()

    assert consumed(restarted) == 1  # started at the committed offsets: only the new record
    assert sample(restarted, "fraud_actions_duplicates_skipped_total", topic=topics.approved) == 0
    assert all(profile_of(r, d["user_id"]).txn_count == 1 for d in first)
    assert record_count(stack, topics.actions) == 6


def test_effects_applied_but_audit_unacknowledged_are_audited_on_redelivery(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    # The state a crash leaves between the Redis transaction and Kafka acknowledging the audit.
    flagged = decision("FLAGGED")
    store = ActionStore(settings.REDIS_URL, settings.BLOCK_TTL_S, settings.IDEMPOTENCY_TTL_S)
    store.apply(
        parse_decision(flagged),
        lambda before, after: audit_records(parse_decision(flagged), before, after, T0, 60, "test")[:1],
    )
    store.close()
    produce_decisions(stack, topics.flagged, [flagged])
    notifier = RecordingNotifier()
    consumer = make_consumer(settings, notifier)
    try:
        drain(consumer, lambda: consumed(consumer) >= 1 and len(notifier.sent) >= 1)
    finally:
        consumer.close()

    assert profile_of(r, flagged["user_id"]).effective_tier == 1  # not raised a second time
    assert len(notifier.sent) == 1
    assert [rec["action_id"] for _, rec in read_all(stack, topics.actions, schemas.ACTION)] == [
        f"{flagged['event_id']}:BLOCK_CARD"
    ]
    assert r.get(marker_key(flagged["event_id"])) == b"done"


def test_a_failing_notifier_is_retried_later_without_delaying_or_repeating_the_effects(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    flagged = decision("FLAGGED")
    produce_decisions(stack, topics.flagged, [flagged])
    notifier = RecordingNotifier(fail_first=2)
    consumer = make_consumer(settings.model_copy(update={"NOTIFY_RETRY_BASE_S": 0.05}), notifier)
    try:
        drain(consumer, lambda: len(notifier.sent) == 1 and record_count(stack, topics.actions) == 3)
    finally:
        consumer.close()

    assert profile_of(r, flagged["user_id"]).effective_tier == 1
    # The decision itself never failed: the notification was retried on its own path.
    assert sample(consumer, "fraud_actions_transient_failures_total", error="NotifyError") == 0
    assert sample(consumer, "fraud_actions_notifications_total", outcome="retried") == 2
    assert sample(consumer, "fraud_actions_notifications_total", outcome="delivered") == 1
    assert sample(consumer, "fraud_actions_taken_total", action="RAISE_RISK_TIER") == 1


def caught_up(body: str, topic: str, expected: int) -> bool:
    """All ``expected`` records consumed and a zero lag reported for every partition of ``topic``."""
    samples = [s for family in text_string_to_metric_families(body) for s in family.samples]
    done = [
        s.value
        for s in samples
        if s.name == "fraud_actions_messages_consumed_total" and s.labels["topic"] == topic
    ]
    lags = [s.value for s in samples if s.name == "fraud_actions_consumer_lag" and s.labels["topic"] == topic]
    return done == [expected] and len(lags) == 4 and not any(lags)


def test_run_serves_metrics_with_lag_and_stops_gracefully(
    stack: Any, topics: Topics, settings: ConsumerSettings
) -> None:
    port = free_port()
    produce_decisions(stack, topics.approved, [decision("APPROVED") for _ in range(3)])
    consumer = make_consumer(settings.model_copy(update={"ACTIONS_METRICS_PORT": port}))
    stop = threading.Event()
    runner = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    body = ""
    try:
        while not caught_up(body, topics.approved, 3):
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                body = resp.read().decode()
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert "fraud_actions_processing_seconds_bucket" in body


def test_cli_acts_and_exits_cleanly_on_sigterm(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    flagged = decision("FLAGGED")
    produce_decisions(stack, topics.flagged, [flagged])
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "SCHEMA_REGISTRY_URL": stack.registry_url,
        "REDIS_URL": stack.redis_url,
        "APPROVED_TOPIC": topics.approved,
        "ACTIONS_TOPIC": topics.actions,
        "DLQ_TOPIC": topics.dlq,
        "ACTIONS_METRICS_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "actions", "--flagged-topic", topics.flagged, "--group-id", settings.GROUP_ID],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not r.exists(blocklist_key(flagged["card_id"])):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the CLI consumer never blocked the card"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert f"{topics.flagged}[" in output and f"correlation_id=cid-{flagged['event_id']}" in output
    assert flagged["card_id"] not in output  # card ids are masked in logs
    assert "action consumer closed" in output
    assert record_count(stack, topics.actions) == 3
