"""What the two baseline consumers share with each other and with the stream job, so that the
benchmark compares architectures, not options: the same intake (decode, validate, dead letter),
the same scoring step (one Redis round trip and one scoring call per batch, decisions encoded
without validation as the job does), the same Kafka client options, and their entry point.

Only the shape differs: the naive baseline hands the step one event at a time and scores it
through ``POST /v1/score``; the batched consumer hands it a whole poll and uses the job's
:class:`~fraud_core.scoring_client.BatchScorer` with its default (binary) body.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, Producer

import schemas
from flink_jobs.settings import JobSettings
from fraud_core.decision import BlocklistPolicy
from fraud_core.enrichment import ProfileStore
from fraud_core.exceptions import DecodeError
from fraud_core.kafka.headers import propagated
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.registry import RegistryClient
from fraud_core.rules import WatchedRules
from fraud_core.scoring_step import Intake, Scorer, ScoringStep
from fraud_core.transaction import Transaction

log = logging.getLogger("baselines")


def intake(settings: JobSettings, registry: RegistryClient, stage: str) -> Intake:
    """The job's intake: a value to a validated event, or a dead letter keeping its bytes."""
    step = Intake(registry, AvroSerializer(registry, schemas.DEAD_LETTER), settings.DLQ_TOPIC, stage)
    step.prepare()
    return step


def scoring_step(settings: JobSettings, registry: RegistryClient, scorer: Scorer) -> ScoringStep:
    """The job's scoring step with the job's options (flink_jobs/operators.py ``Score.open``):
    decisions encoded unvalidated, rules reloaded from their file, the same blocklist policy."""
    step = ScoringStep(
        store=ProfileStore(settings.redis_connect_url, timeout_s=settings.REDIS_TIMEOUT_MS / 1000),
        scorer=scorer,
        serializer=AvroSerializer(registry, schemas.DECISION, validate=False),
        flagged_topic=settings.FLAGGED_TOPIC,
        approved_topic=settings.APPROVED_TOPIC,
        rules=WatchedRules(settings.RULES_FILE or None),
        blocklist_policy=BlocklistPolicy(
            settings.BLOCKLIST_WHEN_UNAVAILABLE, settings.BLOCKLIST_CLOSED_ABOVE_EUR
        ),
    )
    step.prepare()
    return step


def consumer(settings: JobSettings, **overrides: Any) -> Consumer:
    """A consumer of the input topic from the earliest offset, reading committed records only."""
    c = Consumer(
        settings.kafka.librdkafka(
            **{
                "group.id": settings.GROUP_ID,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
                **overrides,
            }
        )
    )
    c.subscribe([settings.INPUT_TOPIC])
    return c


def publisher(settings: JobSettings) -> Publisher:
    """An idempotent producer that sends within a millisecond (linger 1 ms) for both baselines."""
    producer = Producer(
        settings.kafka.librdkafka(**{"enable.idempotence": True, "acks": "all", "linger.ms": 1})
    )
    return Publisher(producer, drain_s=0.01)


def decode(step: Intake, out: Publisher, msg: Message) -> tuple[Transaction, dict[str, bytes]] | None:
    """The message's validated event and propagated headers; None after dead-lettering it (with
    its original bytes and the reason) or logging a consumer error."""
    if msg.error():
        log.warning("consumer error: %s", msg.error())
        return None
    hdrs = propagated(msg.headers())
    try:
        return step.decode(msg.value()), hdrs
    except DecodeError as exc:
        source = (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))
        log.warning("dead letter %s[%d]@%d: %s %s", *source, exc.error_type, exc)
        out.produce(*step.dead_letter(source, msg.key(), msg.value(), exc, hdrs))
        return None


def until_stopped() -> Callable[[], bool]:
    """A check that stays True until SIGTERM or SIGINT arrives."""
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    signal.signal(signal.SIGINT, lambda *_: running.__setitem__(0, False))
    return lambda: running[0]


def main(run: Callable[[JobSettings], None]) -> int:
    """Run a baseline with the job's settings (the same environment variables as the job)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run(JobSettings())
    return 0
