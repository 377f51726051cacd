"""The two steps every design of the pipeline shares. Intake: a raw value to a validated event or
a dead letter. Scoring, on a batch: enrich from Redis, score, decide, encode the decision records.

One implementation, used by the stream job's scoring operator, the batched-consumer baseline and
the in-process limit of the benchmark, so all three do the same work per event and differ only in
how events reach it. Per batch it makes one Redis round trip and one scoring call, never one per
event.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import schemas
from fraud_core.clock import now_ms
from fraud_core.decision import DEFAULT_BLOCKLIST_POLICY, BlocklistPolicy, ScoreResult, decide, topic_for
from fraud_core.enrichment import Enrichment
from fraud_core.exceptions import DecodeError
from fraud_core.features import build_features
from fraud_core.kafka.dead_letter import Source, dead_letter_record
from fraud_core.kafka.headers import correlation_id
from fraud_core.kafka.serde import AvroDeserializer, AvroSerializer
from fraud_core.registry import RegistryClient
from fraud_core.rules import RuleSource, WatchedRules
from fraud_core.transaction import DEFAULT_EVENT_TIME_BOUNDS, EventTimeBounds, Transaction, validate


class Enricher(Protocol):
    def fetch(self, user_ids: Sequence[str], card_ids: Sequence[str]) -> Enrichment: ...


class Scorer(Protocol):
    def score(
        self, items: Sequence[tuple[Transaction, Mapping[str, float]]], correlation_id: str = ""
    ) -> list[ScoreResult]: ...


# A decided event as the sinks need it: (topic, key, Confluent-framed value, headers).
OutputRecord = tuple[str, bytes, bytes, dict[str, bytes]]


@dataclass(slots=True)
class BatchOutcome:
    """The encoded decisions of one batch, in input order, and what it took to make them."""

    records: list[OutputRecord] = field(default_factory=list)
    flagged: int = 0
    blocked: int = 0
    degraded: int = 0
    malformed_profiles: int = 0
    enrichment_s: float = 0.0
    scoring_s: float = 0.0


@dataclass(slots=True)
class ScoringStep:
    """Enrich -> score -> decide -> encode for a batch of validated events with their velocity.

    ``serializer`` writes decisions without validating them: :func:`~fraud_core.decision.decide`
    builds every field from typed values (tests/fraud_core checks its records against the schema),
    and on this hot path the per-field check would be half the encoding cost.
    ``rules`` is asked for the rules in force once per batch: a :class:`WatchedRules` reloads its
    file when it changes (checked at most once a second), so new rules apply without a restart.
    """

    store: Enricher
    scorer: Scorer
    serializer: AvroSerializer
    flagged_topic: str
    approved_topic: str
    rules: RuleSource = field(default_factory=WatchedRules)
    blocklist_policy: BlocklistPolicy = DEFAULT_BLOCKLIST_POLICY

    def prepare(self) -> None:
        """Resolve the output schema ids now, so a missing subject fails at start, not mid-stream."""
        for topic in (self.flagged_topic, self.approved_topic):
            self.serializer.schema_id(topic)

    def run(
        self,
        txns: Sequence[Transaction],
        velocities: Sequence[Mapping[str, float]],
        headers: Sequence[dict[str, bytes]],
    ) -> BatchOutcome:
        out = BatchOutcome()
        if not txns:
            return out
        enrichment = self.store.fetch([t.user_id for t in txns], [t.card_id for t in txns])
        out.enrichment_s = enrichment.latency_s
        out.malformed_profiles = enrichment.malformed_profiles
        features = [
            build_features(t, v, p) for t, v, p in zip(txns, velocities, enrichment.profiles, strict=True)
        ]
        t0 = time.perf_counter()
        results = self.scorer.score(list(zip(txns, features, strict=True)), correlation_id(headers[0]))
        out.scoring_s = time.perf_counter() - t0
        decided_at = now_ms()
        rules = self.rules.current()
        for txn, feats, result, blocked, hdrs in zip(
            txns, features, results, enrichment.blocklisted, headers, strict=True
        ):
            record = decide(
                txn, feats, result, blocked, enrichment.degraded, decided_at, rules, self.blocklist_policy
            )
            topic = topic_for(record, self.flagged_topic, self.approved_topic)
            out.flagged += topic == self.flagged_topic
            out.blocked += record["action"] == "BLOCK"
            out.degraded += record["degraded"]
            value = self.serializer.encode(topic, record)
            out.records.append((topic, txn.user_id.encode(), value, hdrs))
        return out


class Intake:
    """Raw Kafka value -> validated :class:`Transaction`, or the dead-letter record that keeps it.

    Args:
        registry: resolves the writer schema of each value.
        dead_letters: serializer of ``dead_letter.avsc`` records.
        dlq_topic: where dead letters go.
        stage: the component named in dead-letter records.
        time_bounds: how far from now an ``event_time`` may be.
    """

    def __init__(
        self,
        registry: RegistryClient,
        dead_letters: AvroSerializer,
        dlq_topic: str,
        stage: str,
        time_bounds: EventTimeBounds = DEFAULT_EVENT_TIME_BOUNDS,
    ) -> None:
        self.dead_letters = dead_letters
        self.dlq_topic = dlq_topic
        self.stage = stage
        self.time_bounds = time_bounds
        self._deserialize = AvroDeserializer(registry.parsed_schema, schemas.TRANSACTION)

    def prepare(self) -> None:
        """Resolve the dead-letter schema id now: fail at start, not on the first bad record."""
        self.dead_letters.schema_id(self.dlq_topic)

    def decode(self, value: bytes | None, now_ms: int | None = None) -> Transaction:
        """The validated event; its ``event_time`` within the bounds of ``now_ms`` (default: now).

        Raises:
            DecodeError: its ``error_type`` is the dead-letter reason."""
        return validate(self._deserialize(value), self.time_bounds, now_ms)

    def dead_letter(
        self,
        source: Source,
        key: bytes | None,
        value: bytes | None,
        error: DecodeError,
        headers: dict[str, bytes],
    ) -> OutputRecord:
        """The dead-letter record of a record that failed, encoded for the DLQ topic."""
        envelope = dead_letter_record(source, key, value, error, self.stage, headers)
        out_key = key if key is not None else b""
        return (self.dlq_topic, out_key, self.dead_letters.encode(self.dlq_topic, envelope), headers)
