"""The whole pipeline running: producer -> job -> decisions -> action consumers -> Redis -> job.

Every event is accounted for (decision or DLQ) with its correlation id carried end to end; a
BLOCKed card is blocklisted (a REVIEW never is) and the card's next payment is flagged for it; what the consumers learn
from approved payments changes the features the job computes next.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import schemas
from actions.consumer import ActionConsumer
from fraud_core.enrichment import blocklist_key, profile_key
from fraud_core.features import BLOCKLIST_REASON
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher, read_until
from fraud_core.simulator import SimConfig, SimEvent, Simulator
from fraud_core.transaction import Transaction
from producers.profiles import seed_profiles
from tests.actions.action_helpers import consumer_settings
from tests.flink_jobs.test_resilience import Collector

pytestmark = [pytest.mark.integration, pytest.mark.flink]


@pytest.fixture(scope="module")
def pipeline(stack, job_topics, run_job, make_topic) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    topics = job_topics()
    actions_topic = make_topic("actions", 4, schemas.ACTION)
    labels_topic = make_topic("labels", 4, schemas.LABEL)
    settings = consumer_settings(
        stack, flagged=topics.flagged, approved=topics.approved, actions=actions_topic, dlq=topics.dlq
    )
    stop = threading.Event()
    consumer = ActionConsumer(settings)
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    run_job(topics)
    simulator = Simulator(SimConfig(seed=51, n_users=150, rate_eps=10.0))
    seed_profiles(stack.redis_url, simulator.profiles())
    yield {
        "topics": topics,
        "actions": actions_topic,
        "labels": labels_topic,
        "simulator": simulator,
        "publisher": AvroPublisher(stack.bootstrap, stack.registry_url),
    }
    stop.set()
    thread.join(timeout=30)


def _send(p: dict[str, Any], txn: Transaction, label: SimEvent | None = None) -> str:
    headers = new_headers()
    p["publisher"].send(p["topics"].input, schemas.TRANSACTION, txn.user_id, txn.to_record(), headers)
    if label is not None:
        p["publisher"].send(p["labels"], schemas.LABEL, txn.user_id, label.label_record(), headers)
    return headers[0][1].decode()


def test_labelled_stream_is_fully_accounted_for_end_to_end(stack, pipeline: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    events = list(pipeline["simulator"].events(count=400))
    correlation = {e.txn.event_id: _send(pipeline, e.txn, e) for e in events}
    for i in range(3):
        pipeline["publisher"].send_raw(
            pipeline["topics"].input, f"u-poison-{i}".encode(), b"\x07poison", new_headers()
        )
    pipeline["publisher"].flush()
    topics = pipeline["topics"]
    out = read_until(stack.bootstrap, stack.registry_url, topics.outputs, len(events) + 3, 240, idle_s=2)
    decided = [r for r in out if r.topic in (topics.flagged, topics.approved)]
    dead = [r for r in out if r.topic == topics.dlq]
    assert sorted(r.record["event_id"] for r in decided) == sorted(correlation)  # type: ignore[index]
    assert len(dead) == 3
    for r in decided:
        assert r.headers["correlation_id"].decode() == correlation[r.record["event_id"]]  # type: ignore[index]
    labels = read_until(stack.bootstrap, stack.registry_url, [pipeline["labels"]], len(events), 60)
    assert {r.record["event_id"] for r in labels} == set(correlation)  # type: ignore[index]
    flagged = [r for r in decided if r.topic == topics.flagged]
    blocks = {r.record["event_id"] for r in flagged if r.record["action"] == "BLOCK"}  # type: ignore[index]
    # BLOCK: block + tier + notify; REVIEW: notify only; APPROVE: profile update.
    expected_audits = 3 * len(blocks) + (len(flagged) - len(blocks)) + (len(decided) - len(flagged))
    audits = read_until(stack.bootstrap, stack.registry_url, [pipeline["actions"]], expected_audits, 120)
    audited = {r.record["event_id"] for r in audits if r.record["action"] == "BLOCK_CARD"}  # type: ignore[index]
    assert audited == blocks  # a REVIEW never blocks a card
    for r in audits:
        assert r.headers["correlation_id"].decode() == correlation[r.record["event_id"]]  # type: ignore[index]


def _one(collector: Collector, event_id: str) -> dict[str, Any]:
    return collector.wait_for({event_id}, timeout_s=120)[event_id]


def _wait(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_blocked_card_is_blocklisted_and_its_next_payment_flagged_for_it(
    stack, pipeline: dict[str, Any]
) -> None:  # type: ignore[no-untyped-def]
    collector = Collector(stack, [pipeline["topics"].flagged, pipeline["topics"].approved])
    store = redis.Redis.from_url(stack.redis_url)
    burst = next(
        e
        for e in Simulator(SimConfig(seed=52, n_users=150, card_testing_rate=0.05)).events()
        if e.fraud_type == "card_testing"
    )
    card = burst.txn.card_id
    seen: list[dict[str, Any]] = []
    t = burst.txn.event_time
    for i in range(12):  # a card-testing burst on one card: many tiny payments within a minute
        txn = dataclasses.replace(
            burst.txn,
            event_id=str(uuid.uuid4()),
            event_time=t + i * 3000,
            merchant_id=f"merch_ct_{i}",
            amount_minor=99,
        )
        _send(pipeline, txn)
        pipeline["publisher"].flush()
        seen.append(_one(collector, txn.event_id))
    assert any(d["action"] == "BLOCK" for d in seen)  # the card-testing rule blocks the burst
    _wait(lambda: store.exists(blocklist_key(card)), "the consumers to block the card")
    assert store.ttl(blocklist_key(card)) > 0

    later = dataclasses.replace(
        burst.txn, event_id=str(uuid.uuid4()), event_time=t + 3 * 3_600_000, merchant_id="merch_ordinary"
    )
    _send(pipeline, later)
    pipeline["publisher"].flush()
    decision = _one(collector, later.event_id)
    collector.close()
    assert decision["decision"] == "FLAGGED"
    assert decision["reasons"][0] == BLOCKLIST_REASON


def test_the_job_reads_enrolment_live_and_never_its_own_learning(stack, pipeline: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """The consumers learn from an approved payment, but what they learn is not a model input (a
    training replay could not reproduce it); an enrolment change in Redis is read at once."""
    collector = Collector(stack, [pipeline["topics"].flagged, pipeline["topics"].approved])
    store = redis.Redis.from_url(stack.redis_url)
    simulator: Simulator = pipeline["simulator"]
    base = next(
        e.txn
        for e in simulator.events(count=5000)
        if not e.is_fraud and e.txn.channel == "POS" and not store.exists(blocklist_key(e.txn.card_id))
    )
    key = profile_key(base.user_id)
    profile_before = json.loads(store.get(key) or "{}")
    # Hours after anything else of this user (empty windows), an ordinary payment at a shop.
    first = dataclasses.replace(base, event_id=str(uuid.uuid4()), event_time=base.event_time + 6 * 3_600_000)
    _send(pipeline, first)
    pipeline["publisher"].flush()
    before = _one(collector, first.event_id)
    assert before["decision"] == "APPROVED", before["reasons"]
    assert before["features"]["profile_avg_amount"] == round(profile_before["avg_amount"], 2)

    def learned_more_than(count: int) -> Any:
        return lambda: json.loads(store.get(key) or "{}").get("txn_count", 0) > count

    _wait(
        learned_more_than(profile_before.get("txn_count", 0)), "the consumers to learn the approved payment"
    )
    updated = json.loads(store.get(key))
    assert updated["seen_avg_amount"] > 0 and updated["avg_amount"] == profile_before["avg_amount"]
    second = dataclasses.replace(first, event_id=str(uuid.uuid4()), event_time=first.event_time + 60_000)
    _send(pipeline, second)
    pipeline["publisher"].flush()
    after = _one(collector, second.event_id)
    assert after["features"]["profile_avg_amount"] == before["features"]["profile_avg_amount"]
    assert after["features"]["known_device"] == before["features"]["known_device"]

    # A CRM sync rewrites the enrolment: the job's next read sees it.
    if after["decision"] == "APPROVED":
        _wait(learned_more_than(updated["txn_count"]), "the consumers to learn the second payment")
    store.set(key, json.dumps({**json.loads(store.get(key)), "avg_amount": 777.0}))
    third = dataclasses.replace(first, event_id=str(uuid.uuid4()), event_time=second.event_time + 60_000)
    _send(pipeline, third)
    pipeline["publisher"].flush()
    enrolled = _one(collector, third.event_id)
    collector.close()
    assert enrolled["features"]["profile_avg_amount"] == 777.0
