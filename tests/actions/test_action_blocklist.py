"""Review versus block on the real stack: only BLOCK puts a card on the blocklist, with its reason
and an expiry; REVIEW leaves the card usable; the stream job's enrichment sees the block end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from actions.consumer import ActionConsumer
from actions.settings import ConsumerSettings
from fraud_core.action_store import ActionStore
from fraud_core.enrichment import ProfileStore, blocklist_key
from tests.actions.action_helpers import (
    RecordingNotifier,
    Topics,
    consumed,
    decision,
    drain,
    produce_decisions,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def r(stack: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def _act(
    stack: Any, topics: Topics, settings: ConsumerSettings, records: list[dict[str, Any]]
) -> RecordingNotifier:
    produce_decisions(stack, topics.flagged, records)
    notifier = RecordingNotifier()
    consumer = ActionConsumer(settings, notifier=notifier)
    try:
        flagged = sum(1 for rec in records if rec["decision"] == "FLAGGED")
        # Notifications are delivered by the consumer's dispatcher thread, after the effects.
        drain(consumer, lambda: consumed(consumer) >= len(records) and len(notifier.sent) >= flagged)
    finally:
        consumer.close()
    return notifier


def test_review_notifies_but_does_not_block_the_card(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    review = decision("FLAGGED", action="REVIEW", rules_fired=["card_testing_probe"], score=0.4)
    notifier = _act(stack, topics, settings, [review])
    assert not r.exists(blocklist_key(review["card_id"]))
    assert ProfileStore(stack.redis_url).fetch([review["user_id"]], [review["card_id"]]).blocklisted == [
        False
    ]
    [(payload, _)] = notifier.sent
    assert payload["action"] == "REVIEW" and payload["rules_fired"] == ["card_testing_probe"]


def test_block_blocklists_the_card_with_its_reason_and_the_block_expires(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    ttl_s = 2
    short = settings.model_copy(update={"BLOCK_TTL_S": ttl_s})
    block = decision(
        "FLAGGED", action="BLOCK", rules_fired=["card_testing_burst"], reasons=["card-testing burst"]
    )
    _act(stack, topics, short, [block])

    key = blocklist_key(block["card_id"])
    assert 0 < r.pttl(key) <= ttl_s * 1000
    entry = ActionStore(stack.redis_url, ttl_s, 60).block_entry(block["card_id"])
    assert entry is not None
    assert entry["event_id"] == block["event_id"] and entry["reason"] == "rules card_testing_burst"
    assert entry["expires_at"] - entry["blocked_at"] == ttl_s * 1000
    enrichment = ProfileStore(stack.redis_url)
    assert enrichment.fetch([block["user_id"]], [block["card_id"]]).blocklisted == [True]

    deadline = time.monotonic() + 10 * ttl_s
    while r.exists(key):  # Redis expires the key; nothing in our code deletes it
        assert time.monotonic() < deadline, "the blocklist entry did not expire"
        time.sleep(0.2)
    assert enrichment.fetch([block["user_id"]], [block["card_id"]]).blocklisted == [False]


def test_a_decline_by_the_blocklist_keeps_the_original_reason_and_expiry(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    first = decision("FLAGGED", action="BLOCK", rules_fired=["card_testing_burst"])
    _act(stack, topics, settings, [first])
    key = blocklist_key(first["card_id"])
    ttl_before = r.pttl(key)
    again = decision(
        "FLAGGED",
        action="BLOCK",
        card_id=first["card_id"],
        user_id=first["user_id"],
        reasons=["card is on the blocklist"],
    )
    _act(stack, topics, settings, [again])
    assert json.loads(r.get(key))["event_id"] == first["event_id"]  # type: ignore[arg-type]
    assert r.pttl(key) <= ttl_before
