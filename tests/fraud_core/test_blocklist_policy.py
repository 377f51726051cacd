"""The blocklist policy when Redis could not be read (``blocklisted=None``): fail closed (REVIEW)
above an amount by default, or fail open, as configured. Unit tier: no processes."""

from __future__ import annotations

import io
from dataclasses import replace

import fastavro
import pytest

import schemas
from fraud_core.decision import BLOCKLIST_UNAVAILABLE_REASON, BlocklistPolicy, ScoreResult, decide
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.features import BLOCKLIST_REASON
from fraud_core.rules import load_rules
from fraud_core.transaction import Transaction

TXN = Transaction(
    event_id="3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60",
    user_id="u-1",
    card_id="tok_1",
    amount_minor=50_000,  # 500 EUR
    currency="EUR",
    merchant_id="m-1",
    merchant_category="5411",
    country="DE",
    channel="ECOM",
    event_time=1_767_225_600_000,
)
FEATURES = dict.fromkeys(FEATURE_NAMES, 0.0)
QUIET = ScoreResult(0.01, 0.5, "hgb-1", [], block_threshold=0.9)
SMALL = replace(TXN, amount_minor=5_000)  # 50 EUR


@pytest.mark.parametrize(
    ("txn", "blocked", "policy", "action", "reason"),
    [
        (TXN, None, BlocklistPolicy(), "REVIEW", BLOCKLIST_UNAVAILABLE_REASON),
        (SMALL, None, BlocklistPolicy(), "APPROVE", None),
        (SMALL, None, BlocklistPolicy(closed_above_eur=0), "REVIEW", BLOCKLIST_UNAVAILABLE_REASON),
        (TXN, None, BlocklistPolicy(when_unavailable="open"), "APPROVE", None),
        (TXN, True, BlocklistPolicy(when_unavailable="open"), "BLOCK", BLOCKLIST_REASON),
        (TXN, False, BlocklistPolicy(closed_above_eur=0), "APPROVE", None),
    ],
    ids=["closed-large", "closed-small", "closed-all", "open", "known-blocked", "known-clear"],
)
def test_unknown_blocklist_follows_the_policy(
    txn: Transaction, blocked: bool | None, policy: BlocklistPolicy, action: str, reason: str | None
) -> None:
    record = decide(txn, FEATURES, QUIET, blocked, blocked is None, 1, load_rules(), policy)
    assert record["action"] == action
    assert record["decision"] == ("APPROVED" if action == "APPROVE" else "FLAGGED")
    assert record["reasons"][:1] == ([reason] if reason else [])
    assert record["degraded"] is (blocked is None)
    fastavro.schemaless_writer(io.BytesIO(), schemas.load(schemas.DECISION), record)


def test_the_default_policy_is_closed_above_100_eur() -> None:
    assert BlocklistPolicy() == BlocklistPolicy("closed", 100.0)
    at = replace(TXN, amount_minor=10_000)
    assert decide(at, FEATURES, QUIET, None, True, 1, load_rules())["action"] == "APPROVE"
    above = replace(TXN, amount_minor=10_001)
    assert decide(above, FEATURES, QUIET, None, True, 1, load_rules())["action"] == "REVIEW"
