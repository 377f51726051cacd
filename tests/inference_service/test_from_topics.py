"""``make model ARGS="--from-topics --until T"`` against the real stack (session fixtures in
tests/conftest.py, unique topics): point-in-time correctness. A label published with
``labelled_at`` after T changes nothing in a model trained ``--until T``; one with ``labelled_at``
before T changes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import inference_service.training.__main__ as train_cli
import schemas
from fraud_core.kafka_io import AvroPublisher
from fraud_core.simulator import SimConfig, SimEvent, Simulator

pytestmark = pytest.mark.integration

DAY = 86_400_000
HOUR = 3_600_000
LABEL_DELAY = DAY  # the simulator's labels here become known one day after each payment
EVENTS = 4000


def _history() -> list[SimEvent]:
    # Slow enough to span about 12 days; fraud 4x the default so every split period has some.
    base = SimConfig()
    rates = {f"{k}_rate": v * 4 for k, v in base.fraud_rates().items()}
    sim = Simulator(SimConfig(seed=11, n_users=150, rate_eps=0.004, **rates))
    return list(sim.events(count=EVENTS))


def _train(
    monkeypatch: pytest.MonkeyPatch, stack: Any, topics: tuple[str, str], until_ms: int, out: Path
) -> tuple[int, dict[str, Any], str]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", stack.registry_url)
    until = _iso(until_ms)
    code = train_cli.main(
        ["--from-topics", "--until", until, "--topic", topics[0], "--labels-topic", topics[1],
         "--model-dir", str(out), "--label-delay-ms", str(LABEL_DELAY)]
    )  # fmt: skip
    live = (out / "LIVE").read_text().strip() if (out / "LIVE").exists() else ""
    card = json.loads((out / live / "card.json").read_text()) if live else {}
    return code, card, live


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_a_label_after_t_changes_nothing_and_one_before_t_does(
    stack: Any, make_topic: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    topic = make_topic("payments.initiated", partitions=2)
    labels_topic = make_topic("payments.labels", partitions=2, schema=schemas.LABEL)
    events = _history()
    first, last = events[0].txn.event_time, events[-1].txn.event_time
    assert last - first > 8 * DAY
    until = first + 9 * DAY + 7 * HOUR  # not on a whole second: T is exact to the millisecond
    pub = AvroPublisher(stack.bootstrap, stack.registry_url)
    for ev in events:
        pub.send(topic, schemas.TRANSACTION, ev.txn.user_id, ev.txn.to_record())
        pub.send(labels_topic, schemas.LABEL, ev.txn.user_id, ev.label_record(LABEL_DELAY))
    pub.flush()

    # An oracle independent of the trainer: which payments up to T have a label known at T.
    up_to_t = [ev for ev in events if ev.txn.event_time <= until]
    known = [ev for ev in up_to_t if ev.txn.event_time + LABEL_DELAY <= until]
    assert known and len(known) < len(up_to_t)

    code, card_a, version_a = _train(monkeypatch, stack, (topic, labels_topic), until, tmp_path / "a")
    assert code == 0, capsys.readouterr().err
    source = card_a["training_data"]["source"]
    assert source["kind"] == "topics"
    assert source["until_ms"] == until
    assert source["payments"]["up_to_t"] == len(up_to_t)
    assert source["payments"]["after_t_ignored"] == len(events) - len(up_to_t)
    assert source["labels"]["known_at_t"] == len(known) == card_a["training_data"]["events"]
    assert source["labels"]["fraud_known_at_t"] == sum(ev.is_fraud for ev in known)
    assert source["labels"]["unknown_at_t_left_out"] == len(up_to_t) - len(known)
    assert set(source["offsets_read"]) == {topic, labels_topic}
    assert sum(hi["to_exclusive"] for hi in source["offsets_read"][topic].values()) == len(events)
    assert source["profiles"].startswith("none")

    # A label that arrives after T: an analyst reverses a legitimate payment known at T, and a
    # payment unknown at T gets its first label. Neither may reach a model trained --until T.
    legit = next(ev for ev in reversed(known) if not ev.is_fraud)
    known_ids = {ev.txn.event_id for ev in known}
    unknown = next(ev for ev in up_to_t if ev.txn.event_id not in known_ids)
    for ev in (legit, unknown):
        late = {**ev.label_record(0), "is_fraud": True, "fraud_type": "account_takeover",
                "labelled_at": until + 1, "source": "analyst"}  # fmt: skip
        pub.send(labels_topic, schemas.LABEL, ev.txn.user_id, late)
    pub.flush()
    code, card_b, version_b = _train(monkeypatch, stack, (topic, labels_topic), until, tmp_path / "b")
    assert code == 0
    assert version_b == version_a
    assert card_b["training_data"]["fingerprint_sha256"] == card_a["training_data"]["fingerprint_sha256"]
    assert card_b["training_data"]["source"]["labels"]["records_after_t_ignored"] == (
        source["labels"]["records_after_t_ignored"] + 2
    )

    # The same reversal known before T (labelled_at == T counts as known) changes the model.
    early = {**legit.label_record(0), "is_fraud": True, "fraud_type": "account_takeover",
             "labelled_at": until, "source": "analyst"}  # fmt: skip
    pub.send(labels_topic, schemas.LABEL, legit.txn.user_id, early)
    pub.flush()
    code, card_c, version_c = _train(monkeypatch, stack, (topic, labels_topic), until, tmp_path / "c")
    assert code == 0
    assert card_c["training_data"]["fingerprint_sha256"] != card_a["training_data"]["fingerprint_sha256"]
    assert version_c != version_a
    assert card_c["training_data"]["source"]["labels"]["fraud_known_at_t"] == (
        source["labels"]["fraud_known_at_t"] + 1
    )
    assert card_c["training_data"]["source"]["labels"]["by_source"]["analyst"] == 1


def test_no_label_known_at_t_exits_3_saying_so(
    stack: Any, make_topic: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    topic = make_topic("payments.initiated", partitions=1)
    labels_topic = make_topic("payments.labels", partitions=1, schema=schemas.LABEL)
    events = _history()[:200]
    pub = AvroPublisher(stack.bootstrap, stack.registry_url)
    for ev in events:
        pub.send(topic, schemas.TRANSACTION, ev.txn.user_id, ev.txn.to_record())
        pub.send(labels_topic, schemas.LABEL, ev.txn.user_id, ev.label_record(LABEL_DELAY))
    pub.flush()
    before_any_label = events[-1].txn.event_time  # every label comes a day after its payment
    code, _card, live = _train(monkeypatch, stack, (topic, labels_topic), before_any_label, tmp_path / "m")
    assert code == 3
    assert not live
    assert "none of the 200 payments up to T has a label known at T" in capsys.readouterr().err
