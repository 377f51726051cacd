"""The review queue on the real stack (Redis, Kafka, registry): cases opened by the real action
consumer, two concurrent verdicts on one case, the timeout policy, a console restart, and a verdict
interrupted between its resolution and its effects."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import schemas
from actions.consumer import ActionConsumer
from console.metrics import ConsoleMetrics
from console.settings import ConsoleSettings
from console.verdicts import POLICY, Verdicts
from fraud_core.action_logic import parse_decision
from fraud_core.action_store import ActionStore
from fraud_core.enrichment import blocklist_key, profile_key
from fraud_core.exceptions import CaseConflict
from fraud_core.review_cases import CaseStore, Verdict, recent_key
from tests.actions.action_helpers import consumer_settings, decision, drain, produce_decisions, read_all

pytestmark = pytest.mark.integration


@pytest.fixture
def console_settings(stack: Any, make_topic: Callable[..., str]) -> ConsoleSettings:
    return ConsoleSettings(
        APP_ENV="test",
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        SCHEMA_REGISTRY_URL=stack.registry_url,
        REDIS_URL=stack.redis_url,
        LABELS_TOPIC=make_topic("labels", schema=schemas.LABEL),
        ACTIONS_TOPIC=make_topic("actions", schema=schemas.ACTION),
        BLOCK_TTL_S=3600,
        IDEMPOTENCY_TTL_S=3600,
        REVIEW_TIMEOUT_S=3600,
        POLICY_BLOCK_ABOVE_EUR=100.0,
    )


@pytest.fixture
def make_verdicts(console_settings: ConsoleSettings) -> Iterator[Callable[..., Verdicts]]:
    """A console's verdict service (each call: another console process's worth of connections)."""
    made: list[Verdicts] = []

    def make(**overrides: Any) -> Verdicts:
        settings = console_settings.model_copy(update=overrides)
        cases = CaseStore.from_url(settings.REDIS_URL, retention_s=settings.CASE_RETENTION_S)
        made.append(Verdicts(settings, cases, ConsoleMetrics()))
        return made[-1]

    yield make
    for v in made:
        v.close()
        v.cases.close()


def review(**overrides: Any) -> dict[str, Any]:
    """A REVIEW decision record with unique ids."""
    return decision(
        "FLAGGED", **({"action": "REVIEW", "score": 0.71, "reasons": ["possible card testing"]} | overrides)
    )


def open_case(stack: Any, record: dict[str, Any]) -> None:
    """Open a case exactly as the action consumer does (same store call, same transaction)."""
    store = ActionStore(stack.redis_url, 3600, 3600)
    try:
        store.apply(parse_decision(record), lambda before, after: [], record)
    finally:
        store.close()


def test_the_action_consumer_opens_one_case_per_review_and_it_survives_a_console_restart(
    stack: Any, make_topic: Callable[..., str], make_verdicts: Callable[..., Verdicts]
) -> None:
    flagged = make_topic("flagged", schema=schemas.DECISION)
    settings = consumer_settings(
        stack,
        flagged=flagged,
        approved=make_topic("approved", schema=schemas.DECISION),
        actions=make_topic("actions", schema=schemas.ACTION),
        dlq=make_topic("dlq", partitions=1, schema=schemas.DEAD_LETTER),
    )
    user = f"user_{uuid.uuid4().hex[:8]}"
    earlier = decision("APPROVED", user_id=user, amount_minor=4200)
    records = [review(user_id=user, amount_minor=150), review(user_id=user, amount_minor=90_000, score=0.9)]
    consumer = ActionConsumer(settings)
    cases = CaseStore.from_url(stack.redis_url)
    store = redis.Redis.from_url(stack.redis_url)
    try:
        produce_decisions(stack, settings.APPROVED_TOPIC, [earlier])
        drain(consumer, lambda: store.llen(recent_key(user)) == 1)
        produce_decisions(stack, flagged, records, copies=2)  # every REVIEW delivered twice
        ids = {r["event_id"] for r in records}
        drain(consumer, lambda: ids <= {c.event_id for c in cases.open_cases(1000)})
        drain(
            consumer,
            lambda: (
                consumer.metrics.registry.get_sample_value(
                    "fraud_actions_duplicates_skipped_total", {"topic": flagged}
                )
                == 2
            ),
        )
    finally:
        consumer.close()
        cases.close()

    verdicts = make_verdicts()  # a console started after the cases were opened
    mine = [c for c in verdicts.cases.open_cases(1000) if c.user_id == user]
    assert [c.event_id for c in mine] == [records[1]["event_id"], records[0]["event_id"]]  # risk, then amount
    first = mine[1]
    assert first.reasons == ["possible card testing"] and first.features == {"amount_eur": 20.0}
    assert [r["event_id"] for r in mine[0].recent][-1] == earlier["event_id"]  # the user's earlier payment
    assert verdicts.cases.on_hold(first.card_id)
    verdicts.close()
    verdicts.cases.close()
    restarted = make_verdicts()
    assert restarted.cases.get(first.event_id) == first


def race(consoles: list[Verdicts], event_id: str) -> dict[str, str]:
    """Console 0 confirms and console 1 clears the same case at the same moment; who won."""
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def submit(i: int, verdict: Verdict) -> None:
        barrier.wait()
        try:
            consoles[i].resolve(event_id, verdict, f"analyst:a{i}")
            outcome[verdict.value] = "won"
        except CaseConflict:
            outcome[verdict.value] = "conflict"

    threads = [
        threading.Thread(target=submit, args=(0, Verdict.CONFIRM)),
        threading.Thread(target=submit, args=(1, Verdict.CLEAR)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def test_two_concurrent_verdicts_on_one_case_exactly_one_wins(
    stack: Any, console_settings: ConsoleSettings, make_verdicts: Callable[..., Verdicts]
) -> None:
    consoles = [make_verdicts(), make_verdicts()]  # two console processes' worth of connections
    records = [review() for _ in range(5)]
    for r in records:
        open_case(stack, r)
    winners: dict[str, str] = {}
    for record in records:
        outcome = race(consoles, record["event_id"])
        assert sorted(outcome.values()) == ["conflict", "won"], outcome
        winners[record["event_id"]] = next(v for v, o in outcome.items() if o == "won")

    labels = [rec for _, rec in read_all(stack, console_settings.LABELS_TOPIC, schemas.LABEL)]
    assert sorted(r["event_id"] for r in labels) == sorted(winners)  # one label per case
    for label in labels:
        assert label["source"] == "analyst"
        assert label["is_fraud"] == (winners[label["event_id"]] == "CONFIRM")
    audits = [rec for _, rec in read_all(stack, console_settings.ACTIONS_TOPIC, schemas.ACTION)]
    expected = sum(2 if v == "CONFIRM" else 1 for v in winners.values())
    assert len(audits) == expected
    assert all(a["verdict"] == winners[a["event_id"]] for a in audits)
    store = redis.Redis.from_url(stack.redis_url)
    for record in records:
        blocked = bool(store.exists(blocklist_key(record["card_id"])))
        assert blocked == (winners[record["event_id"]] == "CONFIRM")
        assert not consoles[0].cases.on_hold(record["card_id"])


def test_an_overdue_case_is_resolved_by_policy_and_says_so(
    stack: Any, console_settings: ConsoleSettings, make_verdicts: Callable[..., Verdicts]
) -> None:
    small = review(amount_minor=1_000)  # 10 EUR: approved by policy
    large = review(amount_minor=90_000)  # 900 EUR, above the policy's 100 EUR: blocked
    reviewed = review(amount_minor=90_000)  # resolved by an analyst in time: left alone
    for r in (small, large, reviewed):
        open_case(stack, r)
    verdicts = make_verdicts(REVIEW_TIMEOUT_S=0.5)
    verdicts.resolve(reviewed["event_id"], Verdict.CLEAR, "analyst:alice")
    mine = {small["event_id"], large["event_id"]}

    deadline = time.monotonic() + 30
    while not mine <= set(verdicts.cases.overdue(time.time_ns() // 1_000_000, 0.5, limit=10_000)):
        assert time.monotonic() < deadline, "the cases never became overdue"
        time.sleep(0.1)
    # Oldest first, 100 a sweep: cases other tests left in the session's Redis may come first.
    resolved = verdicts.sweep()
    while any(not verdicts.cases.get(e).verdict for e in mine):
        assert resolved and time.monotonic() < deadline, "a sweep resolved none of the overdue cases"
        resolved = verdicts.sweep()
    assert resolved >= 1

    s, big, done = (verdicts.cases.get(r["event_id"]) for r in (small, large, reviewed))
    assert (s.verdict, s.actor) == (Verdict.POLICY_APPROVE, POLICY)
    assert (big.verdict, big.actor) == (Verdict.POLICY_BLOCK, POLICY)
    assert "resolved by policy" in s.note and "not resolved within 0.5 s" in big.note
    assert (done.verdict, done.actor) == (Verdict.CLEAR, "analyst:alice")
    store = redis.Redis.from_url(stack.redis_url)
    assert store.exists(blocklist_key(large["card_id"]))
    assert not store.exists(blocklist_key(small["card_id"]))
    assert b"review timed out" in store.get(blocklist_key(large["card_id"]))
    assert not verdicts.cases.on_hold(small["card_id"]) and not verdicts.cases.on_hold(large["card_id"])
    labels = [rec for _, rec in read_all(stack, console_settings.LABELS_TOPIC, schemas.LABEL)]
    assert [r["event_id"] for r in labels] == [reviewed["event_id"]]  # a timeout is no ground truth
    audits = [rec for _, rec in read_all(stack, console_settings.ACTIONS_TOPIC, schemas.ACTION)]
    # (Open cases of other tests in the session's Redis may be swept too: only these are looked at.)
    policy = sorted(
        (a["event_id"], a["action"], a["verdict"])
        for a in audits
        if a["actor"] == POLICY and a["event_id"] in mine
    )
    assert policy == sorted(
        [
            (small["event_id"], "NOTIFY", "POLICY_APPROVE"),
            (large["event_id"], "BLOCK_CARD", "POLICY_BLOCK"),
            (large["event_id"], "RAISE_RISK_TIER", "POLICY_BLOCK"),
        ]
    )


def test_a_verdict_interrupted_before_its_effects_is_finished_by_the_sweeper_once(
    stack: Any, console_settings: ConsoleSettings, make_verdicts: Callable[..., Verdicts]
) -> None:
    record = review()
    open_case(stack, record)
    verdicts = make_verdicts()
    # The console died right after the resolution: nothing else happened.
    verdicts.cases.resolve(record["event_id"], Verdict.CONFIRM, "analyst:alice", time.time_ns() // 1_000_000)
    assert record["event_id"] in verdicts.cases.pending_effects()
    verdicts.sweep()  # within the grace period: the resolving console may still be at work
    assert record["event_id"] in verdicts.cases.pending_effects()
    verdicts.sweep(outbox_grace_s=0)
    verdicts.sweep(outbox_grace_s=0)  # nothing left to do: the tier is raised once
    store = redis.Redis.from_url(stack.redis_url)
    assert store.exists(blocklist_key(record["card_id"]))
    assert b'"tier_raises":1' in store.get(profile_key(record["user_id"]))
    assert record["event_id"] not in verdicts.cases.pending_effects()
    labels = [rec for _, rec in read_all(stack, console_settings.LABELS_TOPIC, schemas.LABEL)]
    assert [(r["event_id"], r["is_fraud"], r["source"]) for r in labels] == [
        (record["event_id"], True, "analyst")
    ]
