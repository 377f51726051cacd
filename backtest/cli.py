"""``python -m backtest``: replay a range through the live scoring job, evaluate, write a report.

Exit codes: 0 report written; 2 invalid arguments; 3 bad input (unknown model, empty range, range
past retention, missing topic or file); 1 failure while running; 130 interrupted. On any non-zero
exit no run folder is created (the report is staged in a hidden folder and renamed at the end).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backtest import enrichment, evaluate, models, ranges, replay, report, sources
from backtest.exceptions import BadInputError
from backtest.parity import compare_with_live
from fraud_core.exceptions import FraudPipelineError
from fraud_core.features import ALLOWED_LATENESS_MS, HORIZON_MS
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import APPROVED, FLAGGED, INITIATED, LABELS

log = logging.getLogger("backtest")

EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 3, 130


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m backtest",
        description="Replay a range of payments.initiated (or a producer Avro file) through the live "
        "scoring job "
        "(flink_jobs.scoring_job, bounded), once per model version, into topics owned by the run "
        "(backtest.<run_id>.<model>.flagged/.approved/.dlq, consumer group backtest-<run_id>-<model>); join "
        "with "
        "labels; write <out>/<run_id>/ with report.md, metrics.json, scores.csv.gz and plots. Exit codes: 0 "
        "ok, "
        "2 bad arguments, 3 bad input, 1 failure.",
    )
    what = p.add_argument_group("what to replay (default: everything the topic retains)")
    what.add_argument("--topic", default=INITIATED, help=f"input topic (default {INITIATED})")
    what.add_argument(
        "--from",
        dest="from_",
        metavar="TIME",
        help="start, ISO-8601 (UTC unless an offset is given) or epoch ms",
    )
    what.add_argument(
        "--to", metavar="TIME", help="end (exclusive), ISO-8601 or epoch ms; default: the end at start"
    )
    what.add_argument(
        "--offsets", help="per partition start-end (end exclusive), e.g. 0:100-5000,1:0-4200; others skipped"
    )
    what.add_argument(
        "--avro-file", type=Path, help="a producer Avro file (with its .labels.avro) instead of a topic"
    )
    what.add_argument(
        "--warmup-minutes",
        type=float,
        default=(HORIZON_MS + ALLOWED_LATENESS_MS) / 60000,
        help="replay this long before the range to rebuild velocity state, without evaluating it "
        "(default: the longest window plus allowed lateness = %(default)g)",
    )
    how = p.add_argument_group("how to score")
    how.add_argument("--models", default="", help="comma-separated model versions (default: the live one)")
    how.add_argument(
        "--model-dir",
        type=Path,
        default=Path(env("MODEL_DIR", "models")),
        help="model registry folder (env MODEL_DIR; default models)",
    )
    how.add_argument(
        "--thresholds", default="", help="extra thresholds to evaluate from the scores, e.g. 0.2,0.3"
    )
    how.add_argument(
        "--enrichment",
        choices=["snapshot", "none"],
        default="snapshot",
        help="snapshot: copy the live profile:*/blocklist:card:* keys into --snapshot-db; none: an empty "
        "database (default snapshot)",
    )
    how.add_argument(
        "--snapshot-db",
        type=int,
        default=int(env("BACKTEST_REDIS_DB", "15")),
        help="Redis database index the backtest reads, flushed first; never the live one (env "
        "BACKTEST_REDIS_DB; default 15)",
    )
    how.add_argument(
        "--review-cost-eur",
        type=float,
        default=evaluate.DEFAULT_REVIEW_COST_EUR,
        help="cost of reviewing one flagged payment (default %(default)g EUR)",
    )
    io = p.add_argument_group("topics and services")
    io.add_argument("--labels-topic", default=LABELS, help=f"labels topic (default {LABELS})")
    io.add_argument(
        "--live-flagged-topic", default=FLAGGED, help=f"live decisions, for parity (default {FLAGGED})"
    )
    io.add_argument(
        "--live-approved-topic", default=APPROVED, help=f"live decisions, for parity (default {APPROVED})"
    )
    io.add_argument(
        "--parity-with-live",
        action="store_true",
        help="compare with the live decisions (also done whenever the live model is replayed)",
    )
    io.add_argument(
        "--bootstrap-servers",
        default=env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="env KAFKA_BOOTSTRAP_SERVERS",
    )
    io.add_argument(
        "--registry-url",
        default=env("SCHEMA_REGISTRY_URL", "http://localhost:8081/apis/ccompat/v7"),
        help="env SCHEMA_REGISTRY_URL",
    )
    io.add_argument(
        "--redis-url",
        default=env("REDIS_URL", "redis://localhost:6379/0"),
        help="the live Redis (env REDIS_URL); only read",
    )
    io.add_argument(
        "--out", type=Path, default=Path("backtests"), help="report folder root (default backtests/)"
    )
    io.add_argument(
        "--keep-topics", action="store_true", help="keep the run's topics (deleted by default once read back)"
    )
    io.add_argument("--run-id", default="", help=argparse.SUPPRESS)
    return p


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    for noisy in ("fraud_core", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        final = run(args)
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


def run(args: argparse.Namespace) -> Path:
    """The whole backtest; returns the published report folder."""
    started = time.monotonic()
    started_at = datetime.now(tz=UTC)
    run_id = args.run_id or new_run_id()
    if sum(x is not None for x in (args.offsets, args.avro_file)) > 1 or (
        args.offsets and (args.from_ or args.to)
    ):
        raise BadInputError("choose one of --from/--to, --offsets or --avro-file")
    extra = _thresholds(args.thresholds)
    live = models.live_version(args.model_dir)
    chosen = models.resolve_models(args.model_dir, args.models.split(","))
    if args.parity_with_live and live and live not in [m.version for m in chosen]:
        chosen = [*models.resolve_models(args.model_dir, [live]), *chosen]
    reference = live if live in [m.version for m in chosen] else chosen[0].version
    # Security settings (SASL, TLS, Redis credentials) come from the environment, as for every client.
    try:
        conn = ConnectionSettings(KAFKA_BOOTSTRAP_SERVERS=args.bootstrap_servers, REDIS_URL=args.redis_url)
    except ValueError as exc:
        raise BadInputError(f"connection settings: {exc}") from exc
    bootstrap, registry = conn.kafka, args.registry_url

    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / f".{run_id}.work"
    work.mkdir(parents=True, exist_ok=True)
    owned: list[str] = []
    staging: Path | None = None
    try:
        file_labels: dict[str, dict[str, Any]] | None = None
        if args.avro_file is not None:
            topic = f"backtest.{run_id}.input"
            owned.append(topic)
            log.info("publishing %s into %s", args.avro_file, topic)
            _count, file_labels = sources.publish_avro_file(bootstrap, registry, args.avro_file, topic)
            source = f"Avro file {args.avro_file} published into {topic}"
        else:
            topic = args.topic
            source = f"topic {topic}"
        inspector = ranges.TopicInspector(bootstrap, topic)
        try:
            rng = ranges.resolve(
                inspector,
                ranges.parse_time(args.from_) if args.from_ else None,
                ranges.parse_time(args.to) if args.to else None,
                ranges.parse_offsets(args.offsets) if args.offsets else None,
                warmup_ms=int(args.warmup_minutes * 60000),
            )
            first_ts = min(
                (
                    t
                    for p in rng.partitions
                    if p.count and (t := inspector.timestamp_at(p.partition, p.start)) is not None
                ),
                default=0,
            )
        finally:
            inspector.close()
        log.info("range: %s, warm-up %d records", rng.describe(), rng.warmup_events)

        enrich = enrichment.prepare(conn.redis_connect_url, args.snapshot_db, args.enrichment)
        warmup_ids = replay.warmup_event_ids(bootstrap, registry, rng) if rng.warmup_events else set()

        results: dict[str, replay.ReplayResult] = {}
        partitions = max(1, len(rng.partitions))
        for model in chosen:
            topics = replay.RunTopics.named(run_id, model.slug)
            owned.extend(topics.all)
            replay.create_owned_topics(bootstrap, registry, replay.output_specs(topics, partitions))
            with models.serve(args.model_dir, model, work) as service:
                wall, _log = replay.run_job(
                    rng,
                    topics,
                    bootstrap=bootstrap,
                    registry_url=registry,
                    redis_url=enrichment.with_db(conn.redis_connect_url, args.snapshot_db),
                    scoring_url=service.url,
                    api_key=service.api_key,
                    group_id=f"backtest-{run_id}-{model.slug}",
                    job_name=f"backtest-{run_id}-{model.slug}",
                    work_dir=work,
                    progress_label=f"replay {model.version}",
                )
            decisions, dead, replayed, processing = replay.collect(
                bootstrap, registry, topics, rng, warmup_ids
            )
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

        first = results[chosen[0].version]
        if not first.decisions and not first.dead_letters:
            raise BadInputError(f"no events were replayed from {rng.describe()}: nothing to evaluate")
        event_ids = {str(d["event_id"]) for r in results.values() for d in r.decisions}
        if file_labels is not None:
            labels, labels_source = file_labels, f"{args.avro_file}'s labels file"
        else:
            labels = sources.read_labels(bootstrap, registry, args.labels_topic, event_ids)
            labels_source = f"topic {args.labels_topic}"

        joined = {v: evaluate.join(r.decisions, labels) for v, r in results.items()}
        metrics = {
            m.version: evaluate.evaluate_model(joined[m.version], m.threshold, extra, args.review_cost_eur)
            for m in chosen
        }
        parity_doc = None
        if reference == live and args.avro_file is None:
            live_topics = [args.live_flagged_topic, args.live_approved_topic]
            live_decisions = sources.read_live_decisions(
                bootstrap, registry, live_topics, event_ids, first_ts
            )
            mine = {str(d["event_id"]): d for d in results[reference].decisions}
            parity_doc = {
                "live_topics": live_topics,
                "result": compare_with_live(reference, mine, live_decisions).to_json(),
            }

        dead = results[reference].dead_letters
        notes = _notes(enrich, joined, rng)
        doc = {
            "run": {
                "run_id": run_id,
                "started_at": started_at.isoformat(timespec="seconds"),
                "duration_s": round(time.monotonic() - started, 1),
                "source": source,
                "range": {
                    "topic": rng.topic,
                    "requested": rng.requested,
                    "resolved": rng.describe(),
                    "partitions": [
                        {
                            "partition": p.partition,
                            "start": p.start,
                            "end": p.end,
                            "warmup_start": p.warmup_start,
                        }
                        for p in rng.partitions
                    ],
                    "events": rng.events,
                    "warmup_events": rng.warmup_events,
                },
                "dead_letters": {"total": len(dead), "by_type": evaluate.dead_letter_counts(dead)},
                "labels_source": labels_source,
                "labels_by_source": evaluate.label_sources(labels, event_ids),
                "enrichment": {
                    "mode": enrich.mode,
                    "redis_url": enrich.redis_url,
                    "source_url": enrich.source_url,
                    "profiles": enrich.profiles,
                    "blocklisted_cards": enrich.blocklisted_cards,
                    "taken_at": ranges.format_ms(enrich.taken_at_ms),
                    "description": _describe_enrichment(enrich),
                },
                "job_overrides": replay.JOB_OVERRIDES,
                "topics": {v: r.topics.all for v, r in results.items()},
                "topics_deleted": not args.keep_topics,
            },
            "review_cost_eur": args.review_cost_eur,
            "extra_thresholds": extra,
            "reference_model": reference,
            "models": metrics,
            "comparison": evaluate.compare(metrics, reference),
            "throughput": {
                v: {
                    "events_replayed": r.replayed,
                    "wall_s": round(r.wall_s, 2),
                    "processing_s": round(r.processing_s, 2),
                    "events_per_s_wall": round(r.replayed / r.wall_s, 1) if r.wall_s else 0.0,
                    "events_per_s_processing": round(r.replayed / r.processing_s, 1)
                    if r.processing_s
                    else 0.0,
                }
                for v, r in results.items()
            },
            "parity": parity_doc,
            "notes": notes,
        }
        staging = report.staging_dir(args.out, run_id)
        doc["run"]["duration_s"] = round(time.monotonic() - started, 1)
        report.write(staging, doc, joined)
        (staging / "summary.txt").write_text(_summary(doc, args.out / run_id), encoding="utf-8")
        final = report.publish(staging, args.out, run_id)
        staging = None
        shutil.rmtree(work, ignore_errors=True)
        return final
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        logs = sorted(work.glob("*.log"))
        if logs:
            log.error("logs of the failed run kept in %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if not args.keep_topics:
            replay.delete_topics(bootstrap, owned)


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


def _summary(doc: dict[str, Any], final: Path) -> str:
    run = doc["run"]
    lines = [
        f"backtest {run['run_id']}: {run['range']['resolved']}",
        f"  enrichment {run['enrichment']['mode']}, dead letters in range {run['dead_letters']['total']}, "
        f"took {run['duration_s']:.1f} s",
    ]
    for v, m in doc["models"].items():
        a, t = m["at_threshold"], doc["throughput"][v]
        pr = "n/a" if m["pr_auc"] is None else f"{m['pr_auc']:.4f}"
        lines.append(
            f"  {v}{' (live)' if v == doc['reference_model'] else ''}: PR-AUC {pr}, precision "
            f"{a['precision']}, recall {a['recall']}, "
            f"flagged {a['flagged']}, cost {a['total_cost_eur']:,.2f} EUR; "
            f"{t['events_per_s_processing']:,.0f} events/s"
        )
    if doc["parity"]:
        p = doc["parity"]["result"]
        lines.append(
            f"  parity with live: {p['verdict']} ({p['compared']} compared, {p['differing']} different)"
        )
    lines.append(f"  report: {final / 'report.md'}")
    return "\n".join(lines) + "\n"
