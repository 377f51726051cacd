"""A malformed profile in the real Redis halts neither the stream job's enrichment nor the action
consumer: it reads as "no profile" (logged with its key, counted), and the consumer replaces it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from actions.consumer import ActionConsumer
from actions.settings import ConsumerSettings
from fraud_core.enrichment import ProfileStore, parse_profile, profile_key
from fraud_core.features import Profile
from tests.actions.action_helpers import (
    RecordingNotifier,
    Topics,
    consumed,
    decision,
    drain,
    produce_decisions,
    sample,
)

pytestmark = pytest.mark.integration

BAD = [b"[]", b"null", b'{"txn_count": 1e999}', b'{"avg_amount": ', b'{"devices": "d"}']


@pytest.fixture
def r(stack: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def test_enrichment_reads_malformed_profiles_as_absent_and_counts_them(stack: Any, r: redis.Redis) -> None:
    users = [f"user_{uuid.uuid4().hex[:10]}" for _ in range(len(BAD) + 1)]
    for user, raw in zip(users, BAD, strict=False):
        r.set(profile_key(user), raw)
    good = Profile(avg_amount=10.0, home_country="DE", txn_count=2)
    r.set(profile_key(users[-1]), json.dumps(good.to_mapping()))
    store = ProfileStore(stack.redis_url, timeout_s=2.0)
    try:
        got = store.fetch(users, [f"card_{u}" for u in users])
    finally:
        store.close()
    assert got.profiles == [None] * len(BAD) + [good]
    assert got.malformed_profiles == len(BAD)
    assert not got.degraded


def test_the_consumer_replaces_a_malformed_profile_instead_of_crashing(
    stack: Any, topics: Topics, settings: ConsumerSettings, r: redis.Redis
) -> None:
    records = [decision("APPROVED") for _ in BAD]
    for record, raw in zip(records, BAD, strict=True):
        r.set(profile_key(record["user_id"]), raw)
    produce_decisions(stack, topics.approved, records)
    consumer = ActionConsumer(settings, notifier=RecordingNotifier())
    try:
        drain(consumer, lambda: consumed(consumer) >= len(records))
        assert sample(consumer, "fraud_actions_malformed_profiles_total") == len(BAD)
    finally:
        consumer.close()
    for record in records:
        profile = parse_profile(r.get(profile_key(record["user_id"])))  # type: ignore[arg-type]
        assert profile is not None and profile.txn_count == 1 and profile.home_country == "DE"
