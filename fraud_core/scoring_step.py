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
from typing import Any, Protocol

import schemas
from fraud_core import avro
from fraud_core.cards import mask_pans
from fraud_core.decision import DEFAULT_BLOCKLIST_POLICY, BlocklistPolicy, ScoreResult, decide, topic_for
from fraud_core.enrichment import Enrichment
from fraud_core.exceptions import CardNumberRefused, DecodeError
from fraud_core.features import build_features
from fraud_core.registry import RegistryClient
from fraud_core.rules import RuleSource, WatchedRules
from fraud_core.transaction import DEFAULT_EVENT_TIME_BOUNDS, EventTimeBounds, Transaction, validate

PROPAGATED_HEADERS = ("correlation_id", "traceparent")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def propagated(headers: Mapping[str, bytes | None] | None) -> dict[str, bytes]:
    """The headers that travel from an input event to every record derived from it."""
    return {k: v for k, v in (headers or {}).items() if k in PROPAGATED_HEADERS and v is not None}


def correlation_id(headers: Mapping[str, bytes | None]) -> str:
    raw = headers.get("correlation_id")
    return raw.decode("utf-8", "replace") if raw else ""


class Enricher(Protocol):
    def fetch(self, user_ids: Sequence[str], card_ids: Sequence[str]) -> Enrichment: ...


class Scorer(Protocol):
    def score(
        self, items: Sequence[tuple[Transaction, Mapping[str, float]]], correlation_id: str = ""
    ) -> list[ScoreResult]: ...


class RecordEncoder:
    """Looks up the registered schema id of each output subject once, then encodes records."""

    def __init__(self, registry: RegistryClient) -> None:
        self.registry = registry
        self._ids: dict[str, int] = {}

    def schema_id(self, topic: str, schema_name: str) -> int:
        if topic not in self._ids:
            self._ids[topic] = self.registry.lookup_id(f"{topic}-value", schemas.load_text(schema_name))
        return self._ids[topic]

    def encode(self, topic: str, schema_name: str, record: dict[str, Any], validate: bool = True) -> bytes:
        return avro.encode(self.schema_id(topic, schema_name), schemas.load(schema_name), record, validate)


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

    ``rules`` is asked for the rules in force once per batch: a :class:`WatchedRules` reloads its
    file when it changes (checked at most once a second), so new rules apply without a restart.
    """

    store: Enricher
    scorer: Scorer
    encoder: RecordEncoder
    flagged_topic: str
    approved_topic: str
    rules: RuleSource = field(default_factory=WatchedRules)
    blocklist_policy: BlocklistPolicy = DEFAULT_BLOCKLIST_POLICY

    def prepare(self) -> None:
        """Resolve the output schema ids now, so a missing subject fails at start, not mid-stream."""
        for topic in (self.flagged_topic, self.approved_topic):
            self.encoder.schema_id(topic, schemas.DECISION)

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
            # decide() builds every field from typed values (tests/fraud_core checks its records
            # against the schema), so the per-field validation is skipped on this hot path.
            value = self.encoder.encode(topic, schemas.DECISION, record, validate=False)
            out.records.append((topic, txn.user_id.encode(), value, hdrs))
        return out


class Intake:
    """Raw Kafka value -> validated :class:`Transaction`, or the dead-letter record that keeps it."""

    def __init__(
        self,
        registry: RegistryClient,
        encoder: RecordEncoder,
        dlq_topic: str,
        stage: str,
        time_bounds: EventTimeBounds = DEFAULT_EVENT_TIME_BOUNDS,
    ) -> None:
        self.registry = registry
        self.encoder = encoder
        self.dlq_topic = dlq_topic
        self.stage = stage
        self.time_bounds = time_bounds
        self._reader = schemas.load(schemas.TRANSACTION)

    def prepare(self) -> None:
        """Resolve the dead-letter schema id now: fail at start, not on the first bad record."""
        self.encoder.schema_id(self.dlq_topic, schemas.DEAD_LETTER)

    def decode(self, value: bytes | None, now_ms: int | None = None) -> Transaction:
        """The validated event; its ``event_time`` within the bounds of ``now_ms`` (default: now).

        Raises:
            DecodeError: its ``error_type`` is the dead-letter reason."""
        return validate(
            avro.decode(value, self.registry.parsed_schema, self._reader), self.time_bounds, now_ms
        )

    def dead_letter(
        self,
        source: tuple[str, int, int],
        key: bytes | None,
        value: bytes | None,
        error: DecodeError,
        headers: dict[str, bytes],
    ) -> OutputRecord:
        """The dead-letter record of a record that failed: its original bytes, where it came from, why."""
        topic, partition, offset = source
        if isinstance(error, CardNumberRefused) and value is not None:
            # Same length, so the masked value is still the original Avro record.
            value = value.replace(error.pan.encode(), mask_pans(error.pan).encode())
        envelope = {
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "key": key,
            "value": value,
            "error_type": error.error_type,
            "error_message": str(error),
            "failed_at": now_ms(),
            "stage": self.stage,
            "correlation_id": correlation_id(headers) or None,
        }
        out_key = key if key is not None else b""
        return (
            self.dlq_topic,
            out_key,
            self.encoder.encode(self.dlq_topic, schemas.DEAD_LETTER, envelope),
            headers,
        )
