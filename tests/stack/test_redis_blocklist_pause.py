"""The blocklist check against a real Redis paused with ``CLIENT PAUSE``: the enrichment times out,
reports the blocklist state as unknown (not "not blocklisted"), and the policy holds large
payments for review; once Redis answers again a blocklisted card is blocked."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
import redis

from fraud_core.decision import BlocklistPolicy, ScoreResult, decide
from fraud_core.enrichment import ProfileStore, blocklist_key
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.rules import load_rules
from fraud_core.transaction import Transaction

pytestmark = pytest.mark.integration

TXN = Transaction(
    event_id="3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60",
    user_id="u-1",
    card_id="tok_1",
    amount_minor=50_000,
    currency="EUR",
    merchant_id="m-1",
    merchant_category="5411",
    country="DE",
    channel="ECOM",
    event_time=1_767_225_600_000,
)
FEATURES = dict.fromkeys(FEATURE_NAMES, 0.0)
QUIET = ScoreResult(0.01, 0.5, "hgb-1", [], block_threshold=0.9)


def test_a_paused_redis_leaves_the_blocklist_unknown_and_the_policy_decides(stack: Any) -> None:
    card = f"tok_{uuid.uuid4().hex[:12]}"
    writer = redis.Redis.from_url(stack.redis_url)
    writer.set(blocklist_key(card), "{}", ex=60)
    writer.close()
    txns = [replace(TXN, card_id=card), replace(TXN, card_id=card, amount_minor=5_000)]
    store = ProfileStore(stack.redis_url, timeout_s=0.2)
    try:
        admin = redis.Redis.from_url(stack.redis_url)
        admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        try:
            during = store.fetch([t.user_id for t in txns], [t.card_id for t in txns])
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            admin.close()
        after = store.fetch([t.user_id for t in txns], [t.card_id for t in txns])
    finally:
        store.close()
    assert during.degraded and during.blocklisted == [None, None]
    closed = [
        decide(t, FEATURES, QUIET, b, True, 1, load_rules())
        for t, b in zip(txns, during.blocklisted, strict=True)
    ]
    assert [r["action"] for r in closed] == ["REVIEW", "APPROVE"]
    opened = [
        decide(t, FEATURES, QUIET, b, True, 1, load_rules(), BlocklistPolicy(when_unavailable="open"))
        for t, b in zip(txns, during.blocklisted, strict=True)
    ]
    assert [r["action"] for r in opened] == ["APPROVE", "APPROVE"]
    assert not after.degraded and after.blocklisted == [True, True]
    assert [
        decide(t, FEATURES, QUIET, b, False, 1, load_rules())["action"]
        for t, b in zip(txns, after.blocklisted, strict=True)
    ] == [
        "BLOCK",
        "BLOCK",
    ]
