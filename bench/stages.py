"""Where the time goes: microseconds per event for each stage of the scoring path, measured in one
process on the real Redis, registry and scoring service, and the *in-process limit*: every stage
in one Python process on batches, with no Flink, no Kafka and no HTTP (the model is called
in-process). No design built on this Python code can beat that limit on this machine.

``make bench`` runs it first (``make bench ARGS="--stages-only"`` runs only it) and reports the
figures in ``latest.json``: ``stage_costs_us`` and the ``in-process-limit`` row.
"""

from __future__ import annotations

import base64
import marshal
import os
import pickle
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pyflink
from pyflink.common import Row

import schemas
from flink_jobs import jvm_decode
from flink_jobs.settings import JobSettings
from fraud_core.decision import ScoreResult, decide, topic_for
from fraud_core.enrichment import ProfileStore
from fraud_core.entities import DEFAULT_LABEL_DELAY_MS, CardState, MerchantState, StreamFeatures, UserState
from fraud_core.features import build_features
from fraud_core.kafka.serde import AvroSerializer
from fraud_core.model_folder import LIVE_POINTER, read_pointer
from fraud_core.registry import RegistryClient
from fraud_core.rules import load_rules
from fraud_core.scoring_client import BatchScorer
from fraud_core.scoring_step import Intake, ScoringStep
from fraud_core.transaction import Transaction
from inference_service.metrics import Metrics
from inference_service.model_registry import ActiveModels, load_model
from inference_service.scoring import score_items

HTTP_BATCH_SIZES = (1, 16, 64, 256)
BATCH = 256


class _Item:
    """What ``score_items`` reads of a request item: its id and features (no pydantic, no JSON)."""

    __slots__ = ("event_id", "features")

    def __init__(self, event_id: str, features: Mapping[str, float]) -> None:
        self.event_id = event_id
        self.features = features


class InProcessScorer:
    """The scoring service's own scoring function called directly: the model without HTTP."""

    def __init__(self, model_dir: Path) -> None:
        version = read_pointer(model_dir, LIVE_POINTER)
        if version is None:
            raise SystemExit(f"no live model in {model_dir}; run `make model` first")
        self.models = ActiveModels(load_model(model_dir, version), None)
        self.metrics = Metrics()

    def score(
        self, items: Sequence[tuple[Transaction, Mapping[str, float]]], correlation_id: str = ""
    ) -> list[ScoreResult]:
        out = score_items(self.models, [_Item(t.event_id, f) for t, f in items], self.metrics)
        return [ScoreResult(r["score"], r["threshold"], r["model_version"], r["reasons"]) for r in out]


def per_event_us(fn: Callable[[], int], min_seconds: float = 1.0) -> float:
    """Microseconds per event of ``fn`` (which processes some events and returns how many)."""
    fn()  # warm caches and connections
    events = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds:
        events += fn()
    return elapsed / events * 1e6


def measure(
    values: Sequence[bytes],
    registry_url: str,
    redis_url: str,
    scoring_url: str,
    api_key: str,
    model_dir: Path,
    topics: Mapping[str, str],
    seconds: float = 1.0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Stage costs (µs per event) and the in-process limit over ``values`` (encoded input events)."""
    registry = RegistryClient(registry_url)
    decisions = AvroSerializer(registry, schemas.DECISION, validate=False)
    intake = Intake(registry, AvroSerializer(registry, schemas.DEAD_LETTER), topics["dlq"], "bench")
    store = ProfileStore(redis_url, timeout_s=1.0)
    # The JSON body at every batch size (the figures of earlier runs), and the binary columnar body
    # the scoring path sends by default, at the batch size the job sends most.
    scorer = BatchScorer(scoring_url, api_key, timeout_s=5.0, retries=0, encoding="json")
    binary_scorer = BatchScorer(scoring_url, api_key, timeout_s=5.0, retries=0, encoding="binary")
    local = InProcessScorer(model_dir)
    s = _Stages(values, intake, store, local, decisions, topics)
    costs = {
        "decode_validate": per_event_us(s.decode_all, seconds),
        "user_state": per_event_us(s.keyed_state("user"), seconds),
        # The two keyed hops the merchant and card features add: each a state round trip and a
        # marshalled hop.
        "merchant_hop_state": per_event_us(s.keyed_state("merchant"), seconds),
        "card_hop_state": per_event_us(s.keyed_state("card"), seconds),
        "event_hop_marshal": per_event_us(s.event_hop_all, seconds),
        f"redis_enrichment_batch{BATCH}": per_event_us(s.redis_all, seconds),
        "build_features": per_event_us(s.features_all, seconds),
        **{f"http_score_batch{n}": per_event_us(s.http_at(n, scorer), seconds) for n in HTTP_BATCH_SIZES},
        "http_score_binary_batch64": per_event_us(s.http_at(64, binary_scorer), seconds),
        f"model_in_process_batch{BATCH}": per_event_us(s.model_all, seconds),
        "decide_encode": per_event_us(s.decide_encode_all, seconds),
        **jvm_decode_costs(values, registry_url, s.txns, seconds),
    }
    limit = in_process_limit(values, intake, store, local, decisions, topics, seconds * 3)
    scorer.close()
    binary_scorer.close()
    store.close()
    return {k: round(v, 1) for k, v in costs.items()}, limit


def jvm_decode_costs(
    values: Sequence[bytes], registry_url: str, txns: Sequence[Transaction], seconds: float
) -> dict[str, float]:
    """``DECODE_IN=jvm``'s two halves, to set against ``decode_validate``: ``jvm_decode``, the Java
    function alone in a JIT-warm JVM (``DecodeBench`` of the decoder jar), and ``validate_after_jvm_decode``,
    what Python still does with its row (:func:`flink_jobs.jvm_decode.transaction`). The row's crossing into
    Python is not in either: only the end-to-end ``pipeline-jvm-decode`` run shows it. Empty when the jar is
    not built (``make fetch``)."""
    jar = Path(JobSettings.model_fields["DECODER_JAR"].default)
    if not jar.is_file():
        return {}
    classpath = os.pathsep.join([str(jar), str(Path(pyflink.__file__).parent / "lib" / "*")])
    lines = "\n".join(base64.b64encode(v).decode() for v in values)
    res = subprocess.run(
        ["java", "-cp", classpath, "dev.fraudpipe.decoder.DecodeBench", registry_url, str(seconds)],
        input=lines,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if res.returncode != 0:
        raise SystemExit(f"DecodeBench failed: {res.stderr.strip()[-500:]}")
    rows = [Row(None, None, *(getattr(t, f) for f in jvm_decode.FIELDS)) for t in txns]

    def validate_all() -> int:
        for row in rows:
            jvm_decode.transaction(row)
        return len(rows)

    return {
        "jvm_decode": float(res.stdout.split()[-1]),
        "validate_after_jvm_decode": per_event_us(validate_all, seconds),
    }


class _Stages:
    """One workload (the events decoded once, with their velocity, profiles, features and scores) and each
    stage of the scoring path over it alone, as a callable that returns how many events it processed
    (what :func:`per_event_us` times): each stage is measured on the same inputs, apart from the others."""

    def __init__(
        self,
        values: Sequence[bytes],
        intake: Intake,
        store: ProfileStore,
        local: InProcessScorer,
        decisions: AvroSerializer,
        topics: Mapping[str, str],
    ) -> None:
        self.values = values
        self.intake = intake
        self.store = store
        self.local = local
        self.decisions = decisions
        self.topics = topics
        self.txns = [intake.decode(v) for v in values]
        self.batches = [self.txns[i : i + BATCH] for i in range(0, len(self.txns) - BATCH + 1, BATCH)]
        engine = StreamFeatures()
        self.vel = [engine.observe(t) for t in self.txns]
        self.enrichment = store.fetch([t.user_id for t in self.txns], [t.card_id for t in self.txns])
        self.features = [
            build_features(t, v, p)
            for t, v, p in zip(self.txns, self.vel, self.enrichment.profiles, strict=True)
        ]
        self.items = list(zip(self.txns, self.features, strict=True))
        decisions.schema_id(topics["flagged"])
        self.results = local.score(self.items)
        self.rules = load_rules()

    def decode_all(self) -> int:
        intake = self.intake
        for v in self.values:
            intake.decode(v)
        return len(self.values)

    def keyed_state(self, kind: str) -> Callable[[], int]:
        # As the job's keyed operator does it: state read, observe, state write (the state is
        # pickled in Flink's heap backend, PICKLED_BYTE_ARRAY).
        txns = self.txns
        upstream = {"merchant_amount_ratio": 1.0}  # the merchant hop's feature the card reads

        def run() -> int:
            states: dict[str, bytes] = {}
            for t in txns:
                key = {"user": t.user_id, "merchant": t.merchant_id, "card": t.card_id}[kind]
                raw = states.get(key)
                loaded = pickle.loads(raw) if raw else None
                state: UserState | MerchantState | CardState
                if kind == "user":
                    state = UserState.from_state(loaded)
                    state.observe(t)
                else:
                    entity = MerchantState if kind == "merchant" else CardState
                    state = entity.from_state(DEFAULT_LABEL_DELAY_MS, loaded)
                    state.observe(t, upstream)
                states[key] = pickle.dumps(state.to_state())
            return len(txns)

        return run

    def redis_all(self) -> int:
        store = self.store
        for b in self.batches:
            store.fetch([t.user_id for t in b], [t.card_id for t in b])
        return len(self.batches) * BATCH

    def features_all(self) -> int:
        for t, v, p in zip(self.txns, self.vel, self.enrichment.profiles, strict=True):
            build_features(t, v, p)
        return len(self.txns)

    def http_at(self, size: int, client: BatchScorer) -> Callable[[], int]:
        items = self.items
        chunks = [items[i : i + size] for i in range(0, min(len(items), 4096) - size + 1, size)]

        def run() -> int:
            for chunk in chunks:
                if client.score(chunk)[0].degraded:
                    raise RuntimeError(f"the scoring service did not answer a batch of {size}")
            return len(chunks) * size

        return run

    def model_all(self) -> int:
        items, local = self.items, self.local
        for i in range(0, len(items) - BATCH + 1, BATCH):
            local.score(items[i : i + BATCH])
        return len(items) // BATCH * BATCH

    def decide_encode_all(self) -> int:
        decisions, rules, topics = self.decisions, self.rules, self.topics
        for txn, feats, result in zip(self.txns, self.features, self.results, strict=True):
            record = decide(txn, feats, result, False, False, 0, rules)
            decisions.encode(topic_for(record, topics["flagged"], topics["approved"]), record)
        return len(self.txns)

    def event_hop_all(self) -> int:
        # The job's operator-to-operator hop and its ListState buffer: marshal there and back.
        for t, f in zip(self.txns, self.vel, strict=True):
            marshal.loads(marshal.dumps((astuple(t), {}, f)))
        return len(self.txns)


def in_process_limit(
    values: Sequence[bytes],
    intake: Intake,
    store: ProfileStore,
    scorer: InProcessScorer,
    decisions: AvroSerializer,
    topics: Mapping[str, str],
    seconds: float,
) -> dict[str, Any]:
    """Every stage on batches of ``BATCH`` in this one process: the ceiling for this Python code."""
    step = ScoringStep(store, scorer, decisions, topics["flagged"], topics["approved"])
    batches = [values[i : i + BATCH] for i in range(0, len(values) - BATCH + 1, BATCH)]
    batch_ms: list[float] = []

    def run() -> int:
        engine = StreamFeatures()
        for batch in batches:
            t0 = time.perf_counter()
            txns = [intake.decode(v) for v in batch]
            vel = [engine.observe(t) for t in txns]
            step.run(txns, vel, [{}] * len(txns))
            batch_ms.append((time.perf_counter() - t0) * 1000)
        return len(batches) * BATCH

    us = per_event_us(run, seconds)
    batch_ms.sort()
    return {
        "eps": round(1e6 / us, 1),
        "batch": BATCH,
        "batch_ms_p50": round(batch_ms[len(batch_ms) // 2], 2),
        "batch_ms_p99": round(batch_ms[int(len(batch_ms) * 0.99)], 2),
    }
