"""``python -m backtest``: replay a range through the live scoring job, evaluate, write a report.

A run has four steps: :func:`resolve` (models, thresholds, the input and its offset range),
:func:`replay` (the bounded job once per model, outputs read back), :func:`evaluate_run` (join
with labels, metrics, parity with live) and :func:`report` (the typed report, rendered and
published). :func:`run` chains them and owns the clean-up.

Exit codes: 0 report written; 2 invalid arguments; 3 bad input (unknown model, empty range, range
past retention, missing topic or file); 1 failure while running; 130 interrupted. On any non-zero
exit no run folder is created (the report is staged in a hidden folder and renamed at the end).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backtest import enrichment, evaluate, export, models, ranges, replay, sources
from backtest import report as report_files
from backtest.document import (
    BacktestReport,
    DeadLetters,
    EnrichmentInfo,
    Parity,
    PartitionInfo,
    RangeInfo,
    RunInfo,
    Throughput,
)
from backtest.exceptions import BadInputError
from backtest.parity import compare_with_live
from backtest.settings import BacktestSettings
from fraud_core.cli import ENV_NOTE, cli_config, parse_settings
from fraud_core.exceptions import FraudPipelineError

log = logging.getLogger("backtest")

EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 3, 130


class BacktestCli(BacktestSettings):
    __doc__ = (
        "Replay a range of payments.initiated (or a producer Avro file) through the live scoring job "
        "(flink_jobs.scoring_job, bounded), once per model version, into topics owned by the run "
        "(backtest.<run_id>.<model>.flagged/.approved/.dlq, consumer group backtest-<run_id>-<model>); "
        "join with labels; write <out>/<run_id>/ with report.md, metrics.json, scores.csv.gz and plots "
        "(and, with --export, a Parquet file of the reference model's decisions). "
        f"Exit codes: 0 ok, 2 bad arguments, 3 bad input, 1 failure. {ENV_NOTE}"
    )

    model_config = cli_config(
        "python -m backtest",
        {
            "BACKTEST_TOPIC": "topic",
            "BACKTEST_FROM": "from",
            "BACKTEST_TO": "to",
            "BACKTEST_TIME": "time",
            "BACKTEST_OFFSETS": "offsets",
            "BACKTEST_AVRO_FILE": "avro-file",
            "BACKTEST_WARMUP_MINUTES": "warmup-minutes",
            "BACKTEST_MODELS": "models",
            "MODEL_DIR": "model-dir",
            "BACKTEST_THRESHOLDS": "thresholds",
            "BACKTEST_ENRICHMENT": "enrichment",
            "BACKTEST_REDIS_DB": "snapshot-db",
            "BACKTEST_REVIEW_COST_EUR": "review-cost-eur",
            "BACKTEST_FALSE_BLOCK_COST_EUR": "false-block-cost-eur",
            "BACKTEST_MIN_MISSED_FRAUD_EUR": "min-missed-fraud-eur",
            "BACKTEST_K": "k",
            "BACKTEST_EXPORT": "export",
            "BACKTEST_LABELS_TOPIC": "labels-topic",
            "BACKTEST_LIVE_FLAGGED_TOPIC": "live-flagged-topic",
            "BACKTEST_LIVE_APPROVED_TOPIC": "live-approved-topic",
            "BACKTEST_PARITY_WITH_LIVE": "parity-with-live",
            "KAFKA_BOOTSTRAP_SERVERS": "bootstrap-servers",
            "SCHEMA_REGISTRY_URL": "registry-url",
            "REDIS_URL": "redis-url",
            "BACKTEST_OUT": "out",
            "BACKTEST_KEEP_TOPICS": "keep-topics",
            "BACKTEST_RUN_ID": "run-id",
        },
    )


def _thresholds(text: str) -> list[float]:
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            value = float(item)
        except ValueError as exc:
            raise BadInputError(f"--thresholds {item!r} is not a number") from exc
        if not 0.0 <= value <= 1.0:
            raise BadInputError(f"--thresholds {item!r} is outside [0, 1]")
        out.append(value)
    return out


def new_run_id() -> str:
    return datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def _k_flag(argv: list[str]) -> list[str]:
    """``--k N`` as ``-k N``: pydantic-settings gives a one-letter flag one dash; the docs write two."""
    return ["-k" + a[3:] if a == "--k" or a.startswith("--k=") else a for a in argv]


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(BacktestCli, _k_flag(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    for noisy in ("fraud_core", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        final = run(settings)
    except BadInputError as exc:
        sys.stderr.write(f"backtest: bad input: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("backtest: interrupted; no report written\n")
        return EXIT_INTERRUPTED
    except FraudPipelineError as exc:
        sys.stderr.write(f"backtest: failed: {exc}\n")
        return EXIT_FAILURE
    sys.stdout.write((final / "summary.txt").read_text(encoding="utf-8"))
    return 0


@dataclass
class Plan:
    """What a run was asked for, checked: its id, models, thresholds, and the run's own resources."""

    run_id: str
    started: float
    started_at: datetime
    chosen: list[models.ModelInfo]
    live: str | None
    reference: str
    extra_thresholds: list[float]
    work: Path
    owned_topics: list[str] = field(default_factory=list)


@dataclass
class Input:
    """The resolved input: its topic and range, the first timestamp in it, labels a file brought."""

    source: str
    rng: ranges.ReplayRange
    first_ts: int
    file_labels: dict[str, dict[str, Any]] | None


@dataclass
class Evaluation:
    labels_source: str
    labels_by_source: dict[str, int]
    joined: dict[str, evaluate.Joined]
    metrics: dict[str, dict[str, Any]]
    parity: Parity | None
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)


def plan(settings: BacktestSettings) -> Plan:
    """Check the arguments and pick the models; raises BadInputError for a contradiction."""
    s = settings
    if sum(x is not None for x in (s.BACKTEST_OFFSETS, s.BACKTEST_AVRO_FILE)) > 1 or (
        s.BACKTEST_OFFSETS and (s.BACKTEST_FROM or s.BACKTEST_TO)
    ):
        raise BadInputError("choose one of --from/--to, --offsets or --avro-file")
    extra = _thresholds(s.BACKTEST_THRESHOLDS)
    if s.BACKTEST_EXPORT is not None:
        if s.BACKTEST_EXPORT.suffix != ".parquet":
            raise BadInputError(f"--export {s.BACKTEST_EXPORT}: the file name must end in .parquet")
        if not s.BACKTEST_EXPORT.parent.is_dir():
            raise BadInputError(
                f"--export {s.BACKTEST_EXPORT}: folder {s.BACKTEST_EXPORT.parent} does not exist"
            )
    live = models.live_version(s.MODEL_DIR)
    chosen = models.resolve_models(s.MODEL_DIR, s.BACKTEST_MODELS.split(","))
    if s.BACKTEST_PARITY_WITH_LIVE and live and live not in [m.version for m in chosen]:
        chosen = [*models.resolve_models(s.MODEL_DIR, [live]), *chosen]
    reference = live if live in [m.version for m in chosen] else chosen[0].version
    run_id = s.BACKTEST_RUN_ID or new_run_id()
    return Plan(
        run_id=run_id,
        started=time.monotonic(),
        started_at=datetime.now(tz=UTC),
        chosen=chosen,
        live=live,
        reference=reference,
        extra_thresholds=extra,
        work=s.BACKTEST_OUT / f".{run_id}.work",
    )


def resolve(settings: BacktestSettings, p: Plan) -> Input:
    """The input topic (a published Avro file, or the topic) and its offset range with warm-up."""
    s = settings
    file_labels: dict[str, dict[str, Any]] | None = None
    if s.BACKTEST_AVRO_FILE is not None:
        topic = f"backtest.{p.run_id}.input"
        p.owned_topics.append(topic)
        log.info("publishing %s into %s", s.BACKTEST_AVRO_FILE, topic)
        _count, file_labels = sources.publish_avro_file(
            s.kafka, s.SCHEMA_REGISTRY_URL, s.BACKTEST_AVRO_FILE, topic
        )
        source = f"Avro file {s.BACKTEST_AVRO_FILE} published into {topic}"
    else:
        topic = s.BACKTEST_TOPIC
        source = f"topic {topic}"
    inspector = ranges.TopicInspector(s.kafka, topic, sources.event_time_reader(s.SCHEMA_REGISTRY_URL))
    try:
        rng = ranges.resolve(
            inspector,
            ranges.parse_time(s.BACKTEST_FROM) if s.BACKTEST_FROM else None,
            ranges.parse_time(s.BACKTEST_TO) if s.BACKTEST_TO else None,
            ranges.parse_offsets(s.BACKTEST_OFFSETS) if s.BACKTEST_OFFSETS else None,
            warmup_ms=int(s.BACKTEST_WARMUP_MINUTES * 60000),
            by_event_time=s.BACKTEST_TIME == "event",
        )
        first_ts = min(
            (
                t
                for part in rng.partitions
                if part.count and (t := inspector.timestamp_at(part.partition, part.start)) is not None
            ),
            default=0,
        )
    finally:
        inspector.close()
    log.info("range: %s, warm-up %d records", rng.describe(), rng.warmup_events)
    return Input(source, rng, first_ts, file_labels)


def replay_models(
    settings: BacktestSettings, p: Plan, inp: Input, enrich: enrichment.EnrichmentSource
) -> dict[str, replay.ReplayResult]:
    """Run the bounded job once per model into the run's own topics and read the outputs back."""
    bootstrap, registry = settings.kafka, settings.SCHEMA_REGISTRY_URL
    rng = inp.rng
    warmup_ids = replay.warmup_event_ids(bootstrap, registry, rng) if rng.warmup_events else set()
    results: dict[str, replay.ReplayResult] = {}
    partitions = max(1, len(rng.partitions))
    for model in p.chosen:
        topics = replay.RunTopics.named(p.run_id, model.slug)
        p.owned_topics.extend(topics.all)
        replay.create_owned_topics(bootstrap, registry, replay.output_specs(topics, partitions))
        with models.serve(settings.MODEL_DIR, model, p.work) as service:
            wall, _log = replay.run_job(
                rng,
                topics,
                bootstrap=bootstrap,
                registry_url=registry,
                redis_url=enrichment.with_db(settings.redis_connect_url, settings.BACKTEST_REDIS_DB),
                scoring_url=service.url,
                api_key=service.api_key,
                group_id=f"backtest-{p.run_id}-{model.slug}",
                job_name=f"backtest-{p.run_id}-{model.slug}",
                work_dir=p.work,
                progress_label=f"replay {model.version}",
                labels_topic=settings.BACKTEST_LABELS_TOPIC,
            )
        decisions, dead, replayed, processing = replay.collect(bootstrap, registry, topics, rng, warmup_ids)
        results[model.version] = replay.ReplayResult(
            model.version, topics, decisions, dead, wall, processing, replayed
        )
        log.info(
            "%s: %d decisions, %d dead letters in range, %.1f s",
            model.version,
            len(decisions),
            len(dead),
            wall,
        )
    first = results[p.chosen[0].version]
    if not first.decisions and not first.dead_letters:
        raise BadInputError(f"no events were replayed from {rng.describe()}: nothing to evaluate")
    return results


def evaluate_run(
    settings: BacktestSettings, p: Plan, inp: Input, results: dict[str, replay.ReplayResult]
) -> Evaluation:
    """Join the decisions with their labels, compute each model's metrics, compare with live."""
    bootstrap, registry = settings.kafka, settings.SCHEMA_REGISTRY_URL
    event_ids = {str(d["event_id"]) for r in results.values() for d in r.decisions}
    if inp.file_labels is not None:
        labels, labels_source = inp.file_labels, f"{settings.BACKTEST_AVRO_FILE}'s labels file"
    else:
        labels = sources.read_labels(bootstrap, registry, settings.BACKTEST_LABELS_TOPIC, event_ids)
        labels_source = f"topic {settings.BACKTEST_LABELS_TOPIC}"
    joined = {v: evaluate.join(r.decisions, labels) for v, r in results.items()}
    metrics = {
        m.version: evaluate.evaluate_model(
            joined[m.version], m.threshold, p.extra_thresholds, settings.cost, settings.BACKTEST_K
        )
        for m in p.chosen
    }
    parity = None
    if p.reference == p.live and settings.BACKTEST_AVRO_FILE is None:
        live_topics = [settings.BACKTEST_LIVE_FLAGGED_TOPIC, settings.BACKTEST_LIVE_APPROVED_TOPIC]
        try:
            live_decisions = sources.read_live_decisions(
                bootstrap, registry, live_topics, event_ids, inp.first_ts
            )
        except BadInputError as exc:
            # An imported history, or a retrain's range, has no live decisions to compare with:
            # the backtest stands on its own unless the comparison was asked for.
            if settings.BACKTEST_PARITY_WITH_LIVE:
                raise
            log.warning("no parity with live decisions: %s", exc)
        else:
            mine = {str(d["event_id"]): d for d in results[p.reference].decisions}
            parity = Parity(
                live_topics=live_topics, result=compare_with_live(p.reference, mine, live_decisions).to_json()
            )
    return Evaluation(
        labels_source, evaluate.label_sources(labels, event_ids), joined, metrics, parity, dict(labels)
    )


def report(
    settings: BacktestSettings,
    p: Plan,
    inp: Input,
    enrich: enrichment.EnrichmentSource,
    results: dict[str, replay.ReplayResult],
    ev: Evaluation,
) -> BacktestReport:
    """The typed report of the run."""
    rng = inp.rng
    dead = results[p.reference].dead_letters
    return BacktestReport(
        run=RunInfo(
            run_id=p.run_id,
            started_at=p.started_at.isoformat(timespec="seconds"),
            duration_s=round(time.monotonic() - p.started, 1),
            source=inp.source,
            range=RangeInfo(
                topic=rng.topic,
                requested=rng.requested,
                resolved=rng.describe(),
                partitions=[
                    PartitionInfo(
                        partition=x.partition, start=x.start, end=x.end, warmup_start=x.warmup_start
                    )
                    for x in rng.partitions
                ],
                events=rng.events,
                warmup_events=rng.warmup_events,
            ),
            dead_letters=DeadLetters(total=len(dead), by_type=evaluate.dead_letter_counts(dead)),
            labels_source=ev.labels_source,
            labels_by_source=ev.labels_by_source,
            enrichment=EnrichmentInfo(
                mode=enrich.mode,
                redis_url=enrich.redis_url,
                source_url=enrich.source_url,
                profiles=enrich.profiles,
                blocklisted_cards=enrich.blocklisted_cards,
                taken_at=ranges.format_ms(enrich.taken_at_ms),
                description=_describe_enrichment(enrich),
            ),
            job_overrides=replay.JOB_OVERRIDES,
            topics={v: r.topics.all for v, r in results.items()},
            topics_deleted=not settings.BACKTEST_KEEP_TOPICS,
        ),
        cost_model=settings.cost.to_json(),
        k=settings.BACKTEST_K,
        extra_thresholds=p.extra_thresholds,
        reference_model=p.reference,
        models=ev.metrics,
        comparison=evaluate.compare(ev.metrics, p.reference),
        throughput={
            v: Throughput(
                events_replayed=r.replayed,
                wall_s=round(r.wall_s, 2),
                processing_s=round(r.processing_s, 2),
                events_per_s_wall=round(r.replayed / r.wall_s, 1) if r.wall_s else 0.0,
                events_per_s_processing=round(r.replayed / r.processing_s, 1) if r.processing_s else 0.0,
            )
            for v, r in results.items()
        },
        parity=ev.parity,
        notes=_notes(enrich, ev.joined, rng),
    )


def run(settings: BacktestSettings) -> Path:
    """The whole backtest; returns the published report folder."""
    p = plan(settings)
    out = settings.BACKTEST_OUT
    p.work.mkdir(parents=True, exist_ok=True)
    staging: Path | None = None
    try:
        inp = resolve(settings, p)
        enrich = enrichment.prepare(
            settings.redis_connect_url, settings.BACKTEST_REDIS_DB, settings.BACKTEST_ENRICHMENT
        )
        results = replay_models(settings, p, inp, enrich)
        ev = evaluate_run(settings, p, inp, results)
        doc = report(settings, p, inp, enrich, results, ev)
        staging = report_files.staging_dir(out, p.run_id)
        report_files.write(staging, doc, ev.joined)
        (staging / "summary.txt").write_text(doc.summary(str(out / p.run_id / "report.md")), encoding="utf-8")
        if settings.BACKTEST_EXPORT is not None:
            rows = export.table(results[p.reference].decisions, ev.labels, p.reference)
            export.write(settings.BACKTEST_EXPORT, rows)
            log.info("exported %d rows of %s to %s", rows.num_rows, p.reference, settings.BACKTEST_EXPORT)
        final = report_files.publish(staging, out, p.run_id)
        staging = None
        shutil.rmtree(p.work, ignore_errors=True)
        return final
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if sorted(p.work.glob("*.log")):
            log.error("logs of the failed run kept in %s", p.work)
        else:
            shutil.rmtree(p.work, ignore_errors=True)
        raise
    finally:
        if not settings.BACKTEST_KEEP_TOPICS:
            replay.delete_topics(settings.kafka, p.owned_topics)


def _describe_enrichment(e: enrichment.EnrichmentSource) -> str:
    if e.mode == "none":
        return f"none: the job read the empty Redis database {e.redis_url} (every user new, no card blocked)"
    return (
        f"a snapshot of the live {e.source_url} ({e.profiles:,} profile:* and {e.blocklisted_cards:,} "
        f"blocklist:card:* keys) copied at {ranges.format_ms(e.taken_at_ms)} into {e.redis_url}, which the "
        "job read; "
        "profiles are as of the snapshot, not as of the replayed events"
    )


def _notes(
    e: enrichment.EnrichmentSource, joined: dict[str, evaluate.Joined], rng: ranges.ReplayRange
) -> list[str]:
    notes = []
    for v, j in joined.items():
        if j.unlabelled:
            notes.append(f"{v}: {j.unlabelled:,} decisions have no label yet and are not evaluated.")
        if j.degraded:
            notes.append(
                f"{v}: {j.degraded:,} decisions were degraded (fallback rules), included as decided."
            )
        if j.duplicates:
            notes.append(f"{v}: {j.duplicates:,} duplicate decisions (at-least-once) counted once.")
    if rng.warmup_events:
        notes.append(
            f"{rng.warmup_events:,} warm-up records before the range were replayed but are not evaluated."
        )
    return notes
