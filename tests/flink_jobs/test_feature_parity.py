"""Point in time, on one code path: the running job and the training replay compute identical
features for every event of one stream, label-driven ones included.

The stream spans three weeks of event time over a few merchants and cards, so that the merchant
and card fraud rates (labels delayed by two days here) and the days-long spending windows all take
non-trivial values. Its labels arrive late (one to twelve days after their payment), shuffled,
and some never. The job reads them from its labels topic before the payments are published (as
live, where a chargeback arrives days after its payment); the replay
(:func:`fraud_core.entities.replay`) applies each at its ``labelled_at``. One input partition, so
the arrival order of every merchant's and card's payments is the published order.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

import schemas
from fraud_core.entities import StreamFeatures, replay
from fraud_core.feature_catalog import DAY_MS, FEATURE_NAMES, MINUTE_MS, names_of
from fraud_core.features import build_features
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka_io import AvroPublisher, read_until
from fraud_core.labels import Label
from fraud_core.transaction import Transaction

pytestmark = [pytest.mark.integration, pytest.mark.flink]

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
N_EVENTS = 1500
LABEL_DELAY_MS = 2 * DAY_MS


def _stream(seed: int = 11) -> tuple[list[Transaction], list[Label]]:
    rng = random.Random(seed)
    events: list[Transaction] = []
    t = T0
    for _ in range(N_EVENTS):
        t += rng.randrange(1, 40 * MINUTE_MS)  # about 3 weeks for the stream
        late = rng.random() < 0.03  # a few payments arrive out of event-time order
        user = rng.randrange(40)
        events.append(
            Transaction(
                str(uuid.UUID(int=rng.getrandbits(128))),
                f"u-{seed}-{user}",
                f"c-{seed}-{user % 25}",
                rng.randrange(100, 90_000),
                rng.choice(("EUR", "EUR", "GBP", "JPY")),
                f"m-{seed}-{rng.randrange(6)}",
                "5411",
                rng.choice(("DE", "FR", "NL")),
                "POS",
                t - (rng.randrange(1, 30) * MINUTE_MS if late else 0),
            )
        )
    labels = []
    for txn in events:
        fraud = (txn.merchant_id.endswith("-0") and rng.random() < 0.3) or rng.random() < 0.02
        if rng.random() < 0.1:  # never labelled
            continue
        labelled_at = txn.event_time + rng.randrange(1, 12) * DAY_MS + rng.randrange(DAY_MS)
        labels.append(Label(txn.event_id, fraud, labelled_at, txn.card_id, txn.merchant_id, txn.event_time))
    rng.shuffle(labels)  # out of labelled_at order on the topic
    return events, labels


def _label_record(label: Label) -> dict[str, Any]:
    return {
        "event_id": label.event_id,
        "is_fraud": label.is_fraud,
        "fraud_type": "compromised" if label.is_fraud else None,
        "labelled_at": label.labelled_at,
        "source": "chargeback",
        "card_id": label.card_id,
        "merchant_id": label.merchant_id,
        "event_time": label.event_time,
    }


def test_the_job_and_the_training_replay_compute_identical_features(
    stack, make_topic, job_topics, run_job
) -> None:  # type: ignore[no-untyped-def]
    events, labels = _stream()
    topics = job_topics(make_topic("in", 1, schemas.TRANSACTION))
    labels_topic = make_topic("labels", 1, schemas.LABEL)
    topics = type(topics)(topics.input, topics.flagged, topics.approved, topics.dlq, labels_topic)
    publisher = AvroPublisher(stack.bootstrap, stack.registry_url)
    for label in labels:
        publisher.send(labels_topic, schemas.LABEL, label.event_id, _label_record(label), new_headers())
    # A label that is not Avro, last on its single partition: its dead letter says every label
    # before it has been read.
    publisher.send_raw(labels_topic, b"sentinel", b"not a label", new_headers())
    publisher.flush()
    job = run_job(topics, env={"LABEL_DELAY_MS": str(LABEL_DELAY_MS), "SCORING_TIMEOUT_MS": "10000"})
    sentinel = read_until(stack.bootstrap, stack.registry_url, [topics.dlq], 1, 300)
    assert sentinel and sentinel[0].record["source_topic"] == labels_topic, job.tail(60)

    for txn in events:
        publisher.send(topics.input, schemas.TRANSACTION, txn.user_id, txn.to_record(), new_headers())
    publisher.flush()
    out = read_until(stack.bootstrap, stack.registry_url, [topics.flagged, topics.approved], N_EVENTS, 600)
    assert len(out) == N_EVENTS, job.tail(60)
    live = {r.record["event_id"]: r.record["features"] for r in out if r.record is not None}

    expected = {
        txn.event_id: build_features(txn, stream, None)
        for txn, stream in replay(events, labels, StreamFeatures(LABEL_DELAY_MS))
    }
    mismatched = [
        (event_id, name, live[event_id][name], want[name])
        for event_id, want in expected.items()
        for name in FEATURE_NAMES
        if live[event_id][name] != pytest.approx(want[name], abs=1e-9)
    ]
    assert not mismatched, f"{len(mismatched)} feature values differ, e.g. {mismatched[:5]}"
    # The stream exercised what it is for: label-driven rates and days-long windows took values.
    for name in (
        *names_of("labels"),
        "user_count_7d",
        "merchant_amount_ratio",
        "card_merchants_10m",
        "card_high_levels_7d",
    ):
        assert sum(1 for f in expected.values() if f[name] > 0) >= 20, name
