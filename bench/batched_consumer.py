"""The design a careful engineer would pick instead of Flink: one Python consumer that, per batch of
records, decodes and validates them, updates velocity, makes one Redis round trip and one
``POST /v1/score/batch``, produces the decisions, and commits (docs/INTERFACES.md, benchmark section).

It runs the same steps with the same options as the stream job (:mod:`bench.baselines`: ``Intake``,
``StreamFeatures``, ``ScoringStep`` with decisions encoded unvalidated, and the job's
``BatchScorer`` with its default binary body and the job's retries), so the benchmark compares
architectures, not feature code or encodings. Delivery is
at-least-once: offsets are committed only after the batch's decisions are acknowledged. Its
velocity state lives in this process's memory, so unlike the job it forgets everything on restart
and cannot scale out without losing per-user order: what Flink's managed state is paid for.

``python -m bench.batched_consumer`` (environment as for the job: KAFKA_BOOTSTRAP_SERVERS,
SCHEMA_REGISTRY_URL, REDIS_URL, SCORING_URL, SCORING_API_KEY, INPUT_TOPIC, FLAGGED_TOPIC,
APPROVED_TOPIC, DLQ_TOPIC, GROUP_ID, SCORING_BATCH_MAX).
"""

from __future__ import annotations

import logging
import sys

from bench import baselines
from flink_jobs.settings import JobSettings
from fraud_core.entities import StreamFeatures
from fraud_core.registry import RegistryClient
from fraud_core.scoring_client import BatchScorer, CircuitBreaker
from fraud_core.transaction import Transaction

log = logging.getLogger("batched_consumer")
POLL_TIMEOUT_S = 0.005


def run(settings: JobSettings) -> None:
    registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
    intake = baselines.intake(settings, registry, "batched-consumer")
    scorer = BatchScorer(
        settings.SCORING_URL,
        settings.api_key,
        timeout_s=settings.SCORING_TIMEOUT_MS / 1000,
        retries=settings.SCORING_RETRIES,
        breaker=CircuitBreaker(),
    )
    step = baselines.scoring_step(settings, registry, scorer)
    consumer = baselines.consumer(settings, **{"enable.auto.commit": False})
    out = baselines.publisher(settings)
    stream = StreamFeatures()
    running = baselines.until_stopped()
    while running():
        msgs = consumer.consume(settings.SCORING_BATCH_MAX, POLL_TIMEOUT_S)
        txns: list[Transaction] = []
        features = []
        headers = []
        for msg in msgs:
            decoded = baselines.decode(intake, out, msg)
            if decoded is None:
                continue
            txn, hdrs = decoded
            txns.append(txn)
            features.append(stream.observe(txn))
            headers.append(hdrs)
        for record in step.run(txns, features, headers).records:
            out.produce(*record)
        if msgs:
            if out.flush(30) > 0 or out.take_errors():
                raise SystemExit("decisions not delivered within 30 s; offsets not committed")
            consumer.commit(asynchronous=True)
    out.flush(10)
    consumer.close()
    scorer.close()


if __name__ == "__main__":
    sys.exit(baselines.main(run))
