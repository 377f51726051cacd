"""The design the pipeline must beat: one Python consumer that, for each event, decodes it, reads
Redis, calls ``POST /v1/score`` and produces the decision (CONTRACT.md, benchmark section).

It uses the same shared code as the pipeline (decode, validation, velocity features, decision
record), so the benchmark compares architectures, not feature logic. It is deliberately
sequential: one event at a time, one Redis round trip and one HTTP call per event.

``python -m bench.naive_baseline`` (environment: KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL,
REDIS_URL, SCORING_URL, SCORING_API_KEY, plus INPUT_TOPIC, FLAGGED_TOPIC, APPROVED_TOPIC, DLQ_TOPIC,
GROUP_ID as for the job).
"""

from __future__ import annotations

import logging
import signal
import sys

import redis
import requests
from confluent_kafka import Consumer, Producer

import schemas
from bench import baselines
from flink_jobs.settings import JobSettings
from fraud_core.clock import now_ms
from fraud_core.decision import decide, result_from_response, scoring_request, topic_for
from fraud_core.enrichment import blocklist_key, parse_profile, profile_key
from fraud_core.entities import StreamFeatures
from fraud_core.exceptions import DecodeError
from fraud_core.features import build_features
from fraud_core.kafka.headers import propagated
from fraud_core.kafka.publisher import Publisher
from fraud_core.kafka.serde import AvroDeserializer, AvroSerializer
from fraud_core.registry import RegistryClient
from fraud_core.rules import WatchedRules
from fraud_core.scoring_client import fallback
from fraud_core.transaction import validate

log = logging.getLogger("naive_baseline")


def run(settings: JobSettings) -> None:
    registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
    deserialize = AvroDeserializer(registry.parsed_schema, schemas.TRANSACTION)
    decisions = AvroSerializer(registry, schemas.DECISION)
    for topic in (settings.FLAGGED_TOPIC, settings.APPROVED_TOPIC):
        decisions.schema_id(topic)  # a missing subject fails at start
    store = redis.Redis.from_url(settings.redis_connect_url)
    http = requests.Session()
    url = settings.SCORING_URL.rstrip("/") + "/v1/score"
    headers = {"X-API-Key": settings.api_key}
    consumer = Consumer(
        settings.kafka.librdkafka(
            **{
                "group.id": settings.GROUP_ID,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
    )
    producer = Producer(settings.kafka.librdkafka(**{"enable.idempotence": True, "acks": "all"}))
    publisher = Publisher(producer)
    consumer.subscribe([settings.INPUT_TOPIC])
    stream = StreamFeatures()
    rules = WatchedRules(settings.RULES_FILE or None)  # the same rules, reloaded as the job does
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    signal.signal(signal.SIGINT, lambda *_: running.__setitem__(0, False))
    while running[0]:
        msg = consumer.poll(0.1)
        if msg is None or msg.error():
            continue
        try:
            txn = validate(deserialize(msg.value()))
        except DecodeError as exc:
            log.warning("%s[%d]@%d skipped: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            continue
        pipe = store.pipeline(transaction=False)
        pipe.get(profile_key(txn.user_id))
        pipe.exists(blocklist_key(txn.card_id))
        profile_raw, blocked = pipe.execute()
        features = build_features(txn, stream.observe(txn), parse_profile(profile_raw))
        try:
            resp = http.post(url, json=scoring_request(txn, features), headers=headers, timeout=1.0)
            resp.raise_for_status()
            result = result_from_response(resp.json())
        except requests.RequestException:
            result = fallback(features)
        record = decide(txn, features, result, bool(blocked), False, now_ms(), rules.current())
        topic = topic_for(record, settings.FLAGGED_TOPIC, settings.APPROVED_TOPIC)
        publisher.produce(
            topic, txn.user_id.encode(), decisions.encode(topic, record), propagated(msg.headers())
        )
    publisher.flush(10)
    consumer.close()


if __name__ == "__main__":
    sys.exit(baselines.main(run))
