"""Kafka glue of the drift monitor: consume the decision topics, feed the tracker, export gauges.

It runs beside the pipeline, not in it: a consumer group of its own on ``payments.flagged`` and
``payments.approved``, so its cost never adds to a decision's latency, and a slow or stopped
monitor delays no payment. Offsets are committed automatically: a decision missed or counted
twice across a restart moves a 2,000-decision window by one event at most.

A decision that cannot be decoded is counted (``fraud_drift_bad_records``) and logged, not
dead-lettered: the action consumers, which read the same records, already dead-letter it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

import schemas
from fraud_core import avro
from fraud_core.exceptions import DecodeError, RegistryUnavailable
from fraud_core.feature_catalog import FEATURE_NAMES
from fraud_core.model_card import ModelCard
from fraud_core.model_folder import UnreadableCard, card_from_json, card_path, read_card, valid_version_name
from fraud_core.registry import RegistryClient
from fraud_core.service import PollingService
from monitoring.drift import DriftReading
from monitoring.exceptions import InvalidReference, MonitoringError
from monitoring.metrics import Metrics
from monitoring.reference import ModelReference, parse_card
from monitoring.settings import MonitorSettings
from monitoring.tracker import DriftTracker
from monitoring.warmup import warm_up_ms

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 5.0


class CardSource:
    """Model cards by version: ``<model_dir>/<version>/card.json``, else the scoring service's
    ``GET /v1/model`` when the version asked for is the live one there."""

    def __init__(
        self, model_dir: Path, scoring_url: str, api_key: str | None, timeout_s: float = 5.0
    ) -> None:
        self.model_dir = model_dir
        self.scoring_url = scoring_url.rstrip("/")
        self._api_key = api_key
        self.timeout_s = timeout_s

    def card(self, version: str) -> ModelCard:
        """The card of ``version``.

        Raises:
            InvalidReference: neither the folder nor the service has the card of that version, or
                the card found is not a valid model card.
        """
        if valid_version_name(version):
            try:
                return read_card(self.model_dir, version)
            except FileNotFoundError:
                pass
            except UnreadableCard as exc:
                raise InvalidReference(
                    version, f"cannot read {card_path(self.model_dir, version)}: {exc.reason}"
                ) from exc
        url = f"{self.scoring_url}/v1/model"
        if self._api_key is None:
            raise InvalidReference(
                version, f"no card in {self.model_dir}, and no SCORING_API_KEY to ask {url}"
            )
        try:
            resp = requests.get(url, headers={"X-API-Key": self._api_key}, timeout=self.timeout_s)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise InvalidReference(
                version, f"no card in {self.model_dir} and GET {url} failed: {exc}"
            ) from exc
        try:
            live = card_from_json(resp.content, version, f"GET {url}")
        except UnreadableCard as exc:
            raise InvalidReference(version, f"no card in {self.model_dir} and {exc.reason}") from exc
        if live.version != version:
            raise InvalidReference(
                version, f"no card in {self.model_dir}, and the service serves {live.version!r}, not it"
            )
        return live

    def reference(self, version: str) -> ModelReference:
        """The drift reference of ``version`` (raises :class:`InvalidReference`)."""
        return parse_card(self.card(version).to_json(), FEATURE_NAMES)


def publish(
    metrics: Metrics,
    readings: dict[str, tuple[DriftReading, ModelReference | None]],
    warming: Mapping[str, frozenset[str]],
    windowed: frozenset[str] = frozenset(),
) -> None:
    """Set every gauge from the current readings. A feature in ``warming[version]`` gets no PSI or
    JS gauge for that version (one exported before is removed), so no drift alert can judge it, and
    ``fraud_feature_warming`` says so; every feature of ``windowed`` gets that gauge, 0 once warm."""
    for version, (reading, reference) in readings.items():
        cold = warming.get(version, frozenset())
        metrics.window_events.labels(version).set(reading.events)
        metrics.flag_rate.labels(version).set(reading.flag_rate)
        metrics.missing_profile_rate.labels(version).set(reading.missing_profile_rate)
        if reference is None:
            continue
        if reference.flag_rate is not None:
            metrics.flag_rate_reference.labels(version).set(reference.flag_rate)
        for name in windowed | cold:
            metrics.feature_warming.labels(name, version).set(1 if name in cold else 0)
        for name, value in reading.psi.items():
            if name == "score":
                metrics.score_psi.labels(version).set(value)
                metrics.score_js.labels(version).set(reading.js[name])
            elif name in cold:
                for gauge in (metrics.feature_psi, metrics.feature_js):
                    with contextlib.suppress(KeyError):
                        gauge.remove(name, version)
            else:
                metrics.feature_psi.labels(name, version).set(value)
                metrics.feature_js.labels(name, version).set(reading.js[name])


class DriftMonitor(PollingService):
    """Consumes decisions and exports drift; run it with :meth:`run` or step it with :meth:`poll_once`.

    Args:
        settings: topics, group, window, model cards, metrics port.
        metrics: where metrics go; by default a fresh registry that :meth:`run` serves.
    """

    def __init__(self, settings: MonitorSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        super().__init__(settings.MONITOR_METRICS_PORT, self.metrics.registry, log)
        self.cards = CardSource(settings.MODEL_DIR, settings.SCORING_URL, settings.api_key)
        self.tracker = DriftTracker(
            FEATURE_NAMES, settings.DRIFT_WINDOW, self.cards.reference, settings.DRIFT_LABEL_DELAY_S * 1000
        )
        self._windowed = frozenset(n for n in FEATURE_NAMES if warm_up_ms(n, 0) > 0)
        self.registry = RegistryClient(settings.SCHEMA_REGISTRY_URL)
        self._reader = schemas.load(schemas.DECISION)
        self.consumer = Consumer(
            settings.kafka.librdkafka(
                **{
                    "group.id": settings.GROUP_ID,
                    "client.id": f"{settings.GROUP_ID}-consumer",
                    "enable.auto.commit": True,
                    "auto.offset.reset": settings.AUTO_OFFSET_RESET,
                    "isolation.level": "read_committed",
                }
            )
        )
        self.consumer.subscribe(
            [settings.FLAGGED_TOPIC, settings.APPROVED_TOPIC],
            on_revoke=lambda _consumer, partitions: forget_lag(self.metrics, partitions),
        )
        # Silence is measured from the start: a monitor that just started has not missed anything yet.
        self.metrics.last_decision.set(time.time())
        self._publish_due = 0.0
        self._lag_due = 0.0

    def describe(self) -> str:
        s = self.settings
        return (
            f"watching {s.FLAGGED_TOPIC} and {s.APPROVED_TOPIC} as group {s.GROUP_ID}: windows of "
            f"{s.DRIFT_WINDOW} decisions, cards from {s.MODEL_DIR}"
        )

    def release(self) -> None:
        """Leave the group."""
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None  # type: ignore[assignment]
            log.info("drift monitor closed")

    def poll_once(self, timeout_s: float = 1.0) -> int:
        """Take up to ``BATCH_MAX`` decisions, add them to the windows, publish when due; returns
        how many decisions were added."""
        messages = self.consumer.consume(self.settings.BATCH_MAX, timeout_s)
        cpu0 = time.process_time()
        decisions = []
        for msg in messages:
            record = self._read(msg)
            if record is not None:
                decisions.append(record)
        added = 0
        if decisions:
            counts, skipped = self.tracker.observe(decisions)
            added = sum(counts.values())
            for version, state in self.tracker.versions.items():
                if state.reference is None and version in counts:
                    self.metrics.unreferenced.labels(version).inc(counts[version])
            if skipped:
                self.metrics.bad_records.labels("MISSING_FEATURE").inc(skipped)
            self.metrics.last_decision.set(time.time())
        now = time.monotonic()
        if now >= self._publish_due:
            self._publish_due = now + self.settings.PUBLISH_INTERVAL_S
            self.metrics.stream_elapsed.set(self.tracker.clock.elapsed_ms / 1000)
            readings = self.tracker.readings(self.settings.DRIFT_MIN_EVENTS)
            warming = {version: self.tracker.warming(version) for version in readings}
            publish(self.metrics, readings, warming, self._windowed)
        self.metrics.cpu_seconds.inc(time.process_time() - cpu0)
        self._update_lag()
        return added

    def _read(self, msg: Message) -> dict[str, Any] | None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise MonitoringError(f"fatal Kafka error: {err}")
            log.warning("Kafka: %s", err)
            return None
        topic = msg.topic() or ""
        self.metrics.decisions.labels(topic).inc()
        try:
            return avro.decode(msg.value(), self.registry.parsed_schema, self._reader)
        except (DecodeError, RegistryUnavailable) as exc:
            kind = exc.error_type if isinstance(exc, DecodeError) else "REGISTRY_UNAVAILABLE"
            self.metrics.bad_records.labels(kind).inc()
            log.warning("%s[%s]@%s not read: %s", topic, msg.partition(), msg.offset(), exc)
            return None

    def _update_lag(self) -> None:
        """Every few seconds: high watermark minus position, per assigned partition."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_INTERVAL_S
        try:
            assignment = self.consumer.assignment()
            for tp in self.consumer.position(assignment) if assignment else []:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
                position = tp.offset if tp.offset >= 0 else high
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - max(position, low)))
        except KafkaException as exc:
            log.debug("lag not updated: %s", exc)


def forget_lag(metrics: Metrics, partitions: list[TopicPartition]) -> None:
    """Forget the lag of partitions this monitor no longer owns."""
    for p in partitions:
        with contextlib.suppress(KeyError):
            metrics.lag.remove(p.topic, str(p.partition))
