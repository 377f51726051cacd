"""The design a careful engineer would pick instead of Flink: one Python consumer that, per batch of
records, decodes and validates them, updates velocity, makes one Redis round trip and one
``POST /v1/score/batch``, produces the decisions, and commits (CONTRACT.md, benchmark section).

It runs the same ``fraud_core`` steps as the stream job (``Intake``, ``StreamFeatures``,
``ScoringStep``), so the benchmark compares architectures, not feature code. Delivery is
at-least-once: offsets are committed only after the batch's decisions are acknowledged. Its
velocity state lives in this process's memory, so unlike the job it forgets everything on restart
and cannot scale out without losing per-user order: what Flink's managed state is paid for.

``python -m bench.batched_consumer`` (environment as for the job: KAFKA_BOOTSTRAP_SERVERS,
SCHEMA_REGISTRY_URL, REDIS_URL, SCORING_URL, SCORING_API_KEY, INPUT_TOPIC, FLAGGED_TOPIC,
APPROVED_TOPIC, DLQ_TOPIC, GROUP_ID, SCORING_BATCH_MAX).
"""

from __future__ import annotations

import logging
import signal
import sys

from confluent_kafka import Consumer, Producer

import schemas
from bench import baselines
from flink_jobs.settings import JobSettings
from fraud_core.enrichment import ProfileStore
from fraud_core.entities import StreamFeatures
from fraud_core.exceptions import DecodeError
from fraud_core.kafka.headers import propagated
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.registry import RegistryClient
from fraud_core.rules import WatchedRules
from fraud_core.scoring_client import BatchScorer
from fraud_core.scoring_step import Intake, ScoringStep
from fraud_core.transaction import Transaction

log = logging.getLogger("batched_consumer")
POLL_TIMEOUT_S = 0.005


def run(settings: JobSettings) -> None:
    registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
    intake = Intake(
        registry, AvroSerializer(registry, schemas.DEAD_LETTER), settings.DLQ_TOPIC, "batched-consumer"
    )
    intake.prepare()
    step = ScoringStep(
        ProfileStore(settings.redis_connect_url, timeout_s=settings.REDIS_TIMEOUT_MS / 1000),
        BatchScorer(settings.SCORING_URL, settings.api_key, timeout_s=settings.SCORING_TIMEOUT_MS / 1000),
        AvroSerializer(registry, schemas.DECISION, validate=False),
        settings.FLAGGED_TOPIC,
        settings.APPROVED_TOPIC,
        WatchedRules(settings.RULES_FILE or None),
    )
    step.prepare()
    consumer = Consumer(
        settings.kafka.librdkafka(
            **{
                "group.id": settings.GROUP_ID,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
            }
        )
    )
    producer = Producer(
        settings.kafka.librdkafka(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
            }
        )
    )
    publisher = Publisher(producer, drain_s=0.01)
    consumer.subscribe([settings.INPUT_TOPIC])
    stream = StreamFeatures()
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    signal.signal(signal.SIGINT, lambda *_: running.__setitem__(0, False))
    while running[0]:
        msgs = consumer.consume(settings.SCORING_BATCH_MAX, POLL_TIMEOUT_S)
        txns: list[Transaction] = []
        features = []
        headers = []
        for msg in msgs:
            if msg.error():
                log.warning("consumer error: %s", msg.error())
                continue
            hdrs = propagated(msg.headers())
            try:
                txn = intake.decode(msg.value())
            except DecodeError as exc:
                source = (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))
                log.warning("dead letter %s[%d]@%d: %s %s", *source, exc.error_type, exc)
                publisher.produce(*intake.dead_letter(source, msg.key(), msg.value(), exc, hdrs))
                continue
            txns.append(txn)
            features.append(stream.observe(txn))
            headers.append(hdrs)
        for record in step.run(txns, features, headers).records:
            publisher.produce(*record)
        if msgs:
            if publisher.flush(30) > 0 or publisher.take_errors():
                raise SystemExit("decisions not delivered within 30 s; offsets not committed")
            consumer.commit(asynchronous=True)
    publisher.flush(10)
    consumer.close()


if __name__ == "__main__":
    sys.exit(baselines.main(run))
