"""``make demo``: the whole pipeline on a generated stream, with a live view and a summary.

Starts (only what is not running yet) the local stack, trains a model if none is live, starts the
scoring service, the stream job, the action consumers, the analyst console (its URL is
printed: review cases while the demo runs), the drift monitor and a local Prometheus that
scrapes them all and evaluates the alert rules, produces about a minute of simulated
payments with fraud scenarios and labels, shows what flows and which alerts fire, prints a
summary including how well the flagged set matched the ground truth, and stops everything it
started (``KEEP_RUNNING=1`` leaves it all up).

Each run starts from a clean slate and says so: its own Redis database (:data:`DEMO_REDIS_DB`, which
the demo owns and empties at the start; the stack's other databases are left alone), its own
consumer groups reading from the end of the topics, and fresh user, merchant and card ids (an id
salt per run: the same seeded stream otherwise), so no blocklist entry, profile, tier, case or
label of an earlier run, demo or not, meets this one. Run again, it gives the same figures.

``--drift`` shifts the simulated population a third of the way through the stream (new
countries, larger amounts, riskier merchants): the drift gauges rise and the ``FeatureDrift``
alert fires; the summary gives the time from the shift to the alert.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
import redis
from confluent_kafka import ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import Field
from pydantic_settings import BaseSettings, CliToggleFlag, SettingsConfigDict

from console.exceptions import ConsoleError
from console.settings import DEV_ANALYST, DEV_ANALYST_PASSWORD
from deploy.local.processes import (
    ManagedProcess,
    ensure_model,
    spawn,
    start_job,
    start_scoring_service,
    wait_http,
)
from deploy.local.prometheus import LocalPrometheus
from deploy.local.stack import REPO_ROOT, StackConfig, ensure_stack, port_open
from fraud_core.cli import ENV_NOTE, child_env, cli_config, parse_settings
from fraud_core.decision import ScoreResult, model_action
from fraud_core.features import BLOCKLIST_REASON
from fraud_core.kafka_io import consumer, decoder
from fraud_core.review_cases import CaseStore
from fraud_core.rules import severity
from fraud_core.settings import DEV_API_KEY, ScoringClientSettings
from fraud_core.topics import ACTIONS, APPROVED, DLQ, FLAGGED, INITIATED, LABELS

LOGS = REPO_ROOT / ".stack" / "logs"
CONSOLE_PORT = 8090
CONSOLE_URL = f"http://127.0.0.1:{CONSOLE_PORT}/"


def console_login() -> str:
    """How to log in to the console: the development analyst in local mode, else the configured users."""
    if os.environ.get("CONSOLE_USERS") or os.environ.get("APP_ENV", "local") not in ("local", "test"):
        return "log in as one of CONSOLE_USERS"
    return f"log in as {DEV_ANALYST} / {DEV_ANALYST_PASSWORD}: development credentials, local mode only"


def case_line(redis_url: str) -> str:
    """The review queue at the end of the run."""
    cases = CaseStore.from_url(redis_url)
    try:
        counts = cases.counts()
    except ConsoleError as exc:
        return f"review queue: unavailable ({exc})"
    finally:
        cases.close()
    return (
        f"review queue: {counts['open']} cases open, {counts['resolved']} resolved "
        f"(by analysts in the console or by the timeout policy)"
    )


# The Redis database of the demo: emptied at the start of every run (and only this one).
DEMO_REDIS_DB = 15


@dataclass(frozen=True)
class DemoRun:
    """What makes one run its own: a run id that salts the simulated ids and names the consumer
    groups (new groups read from the end: nothing an earlier run or a `make produce` left on the
    topics is decided or acted on again), and the demo's own Redis database."""

    run_id: str

    @classmethod
    def fresh(cls) -> DemoRun:
        return cls(secrets.token_hex(4))

    def redis_url(self, stack_url: str) -> str:
        """``stack_url`` pointing at :data:`DEMO_REDIS_DB` instead of its database."""
        base, _, db = stack_url.rpartition("/")
        if not base.startswith("redis") or not db.isdigit():
            raise ValueError(f"REDIS_URL {stack_url!r} does not end in /<database number>")
        return f"{base}/{DEMO_REDIS_DB}"

    def group(self, part: str) -> str:
        return f"fraud-demo-{self.run_id}-{part}"

    def job_env(self) -> dict[str, str]:
        return {"GROUP_ID": self.group("job"), "START_FROM": "latest"}

    def consumers_env(self) -> dict[str, str]:
        return {"GROUP_ID": self.group("actions"), "AUTO_OFFSET_RESET": "latest"}

    def monitor_env(self) -> dict[str, str]:
        return {"GROUP_ID": self.group("drift-monitor"), "AUTO_OFFSET_RESET": "latest"}

    def producer_args(self) -> list[str]:
        return ["--id-salt", self.run_id]

    def describe(self) -> str:
        return (
            f"run {self.run_id}: a clean slate: Redis database {DEMO_REDIS_DB} emptied (the demo's own), "
            f"consumer groups {self.group('*')} from the end of the topics, ids salted with {self.run_id}"
        )


def clear_demo_database(url: str) -> int:
    """Empty the demo's own Redis database (``url`` must name :data:`DEMO_REDIS_DB`); returns the
    number of keys it held."""
    if not url.endswith(f"/{DEMO_REDIS_DB}"):
        raise ValueError(f"refusing to empty {url}: the demo owns database {DEMO_REDIS_DB} only")
    client = redis.Redis.from_url(url)
    try:
        held = cast(int, client.dbsize())
        client.flushdb()
    finally:
        client.close()
    return held


def wait_group_assigned(bootstrap: str, group: str, timeout_s: float = 60.0) -> None:
    """Wait until consumer group ``group`` is stable with partitions assigned: a group reading from
    the end must have its partitions before the first record is produced, or it skips it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        futures = admin.describe_consumer_groups([group], request_timeout=5)
        try:
            found = futures[group].result()
        except KafkaException:  # the coordinator does not know the group yet: ask again
            found = None
        if (
            found is not None
            and found.state == ConsumerGroupState.STABLE
            and any(m.assignment.topic_partitions for m in found.members)
        ):
            return
        time.sleep(0.5)
    raise SystemExit(f"error: consumer group {group} got no partitions within {timeout_s:.0f}s")


PROMETHEUS_PORT = int(os.environ.get("PROMETHEUS_PORT", "9090"))
MONITOR_PORT = 9104
DRIFT_FRACTION = 1 / 3  # where in the stream --drift shifts the population
DRIFT_ALERT = "FeatureDrift"
DRIFT_WAIT_S = 150.0  # after the stream ends, how long --drift waits for the alert to fire


@dataclass
class View:
    """What the demo has seen on the topics since it started."""

    input_ts: dict[str, int] = field(default_factory=dict)
    decided_at: dict[str, int] = field(default_factory=dict)
    decisions: Counter[str] = field(default_factory=Counter)
    flagged_ids: set[str] = field(default_factory=set)
    actions_by_id: dict[str, str] = field(default_factory=dict)  # event_id -> APPROVE/REVIEW/BLOCK
    cause_by_id: dict[str, str] = field(default_factory=dict)  # flagged event_id -> blocklist/rules/model
    degraded: int = 0
    dlq: int = 0
    actions: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    labels: dict[str, str | None] = field(default_factory=dict)
    pending_latency: dict[str, int] = field(default_factory=dict)
    latencies: list[int] = field(default_factory=list)
    drift_at: int | None = None  # the input event count at which the producer shifts the population
    shift_ms: int | None = None  # Kafka timestamp of that event

    def latency(self) -> tuple[float, float]:
        if not self.latencies:
            return 0.0, 0.0
        arr = np.array(self.latencies[-5000:])
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


class Watcher(threading.Thread):
    """Reads every pipeline topic from its current end, so the view counts this run only."""

    def __init__(self, cfg: StackConfig, view: View) -> None:
        super().__init__(daemon=True)
        self.cfg = cfg
        self.view = view
        self.stop = threading.Event()
        self.consumer = consumer(cfg.bootstrap)
        assignment = []
        for topic in (INITIATED, FLAGGED, APPROVED, DLQ, LABELS, ACTIONS):
            for p in self.consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                assignment.append(TopicPartition(topic, p, high))
        self.consumer.assign(assignment)

    def run(self) -> None:
        decode = decoder(self.cfg.registry_url)
        v = self.view
        while not self.stop.is_set():
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            now = time.time_ns() // 1_000_000
            topic = msg.topic()
            if topic == DLQ:
                v.dlq += 1
                continue
            if topic == ACTIONS:
                v.actions += 1
                continue
            record = decode(msg.value())
            if record is None:
                continue
            if topic == INITIATED:
                v.input_ts[record["event_id"]] = msg.timestamp()[1]
                if v.drift_at is not None and v.shift_ms is None and len(v.input_ts) > v.drift_at:
                    v.shift_ms = msg.timestamp()[1]
                if record["event_id"] in v.pending_latency:
                    v.latencies.append(v.pending_latency.pop(record["event_id"]) - msg.timestamp()[1])
            elif topic == LABELS:
                v.labels[record["event_id"]] = record["fraud_type"] if record["is_fraud"] else None
            else:
                v.decisions[record["decision"]] += 1
                v.degraded += record["degraded"]
                v.reasons.update(record["reasons"])
                v.actions_by_id[record["event_id"]] = record.get("action") or "APPROVE"
                if record["decision"] == "FLAGGED":
                    v.flagged_ids.add(record["event_id"])
                    v.cause_by_id[record["event_id"]] = cause(record)
                sent = v.input_ts.get(record["event_id"])
                if sent is None:
                    v.pending_latency[record["event_id"]] = now
                else:
                    v.latencies.append(now - sent)
        self.consumer.close()


@dataclass
class AlertView:
    """What the local Prometheus says: alerts, the largest drift, and when the drift alert began."""

    firing: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    top_psi: tuple[str, float] | None = None
    score_psi: float | None = None
    flag_rate: float | None = None
    drift_pending_ms: int | None = None  # activeAt of the drift alert: the PSI crossed the threshold
    drift_firing_ms: int | None = None  # first seen firing (after its `for:`)
    drift_feature: str = ""


def _alert_label(alert: dict[str, Any]) -> str:
    labels = alert.get("labels", {})
    detail = labels.get("feature") or labels.get("topic") or labels.get("job") or ""
    return f"{labels.get('alertname', '?')}({detail})" if detail else str(labels.get("alertname", "?"))


def _rfc3339_ms(text: str) -> int | None:
    """Milliseconds of Prometheus' RFC 3339 timestamps (nanosecond fractions are cut to micro)."""
    match = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]
    stamp = datetime.fromisoformat(match.group(1) + fraction + match.group(3).replace("Z", "+00:00"))
    return int(stamp.timestamp() * 1000)


def poll_prometheus(prom: LocalPrometheus, a: AlertView) -> None:
    """Refresh ``a`` from Prometheus' alerts and a few instant queries."""
    alerts = prom.alerts()
    a.firing = sorted({_alert_label(x) for x in alerts if x.get("state") == "firing"})
    a.pending = sorted({_alert_label(x) for x in alerts if x.get("state") == "pending"})
    drift = [x for x in alerts if x.get("labels", {}).get("alertname") == DRIFT_ALERT]
    if drift and a.drift_pending_ms is None:
        first = min(drift, key=lambda x: str(x.get("activeAt", "")))
        a.drift_pending_ms = _rfc3339_ms(str(first.get("activeAt", "")))
        a.drift_feature = str(first.get("labels", {}).get("feature", ""))
    if a.drift_firing_ms is None and any(x.get("state") == "firing" for x in drift):
        a.drift_firing_ms = time.time_ns() // 1_000_000
    top = prom.query('topk(1, fraud_feature_psi{feature!="hour_of_day"})')
    if top:
        a.top_psi = (str(top[0]["metric"].get("feature", "?")), float(top[0]["value"][1]))
    for attr, expr in (("score_psi", "max(fraud_score_psi)"), ("flag_rate", "max(fraud_flag_rate)")):
        found = prom.query(expr)
        if found:
            setattr(a, attr, float(found[0]["value"][1]))


def alert_lines(a: AlertView) -> list[str]:
    top = f"{a.top_psi[0]} {a.top_psi[1]:.2f}" if a.top_psi else "-"
    score = f"{a.score_psi:.2f}" if a.score_psi is not None else "-"
    flag = f"{a.flag_rate:.1%}" if a.flag_rate is not None else "-"
    return [
        f"         drift: largest feature PSI {top}, score PSI {score}, flag rate {flag}   "
        f"alerts firing: {', '.join(a.firing) or 'none'}; pending: {', '.join(a.pending) or 'none'}"
    ]


def drift_summary(v: View, a: AlertView, prom: LocalPrometheus) -> list[str]:
    """The drift section: time from the shift to the alert, and the monitor's cost per decision."""
    lines = ["", "=== monitoring ==="]
    cost = prom.query("sum(fraud_drift_cpu_seconds_total) / sum(fraud_drift_decisions_total)")
    if cost and not math.isnan(float(cost[0]["value"][1])):
        lines.append(f"drift monitor cost: {float(cost[0]['value'][1]) * 1e6:.1f} us CPU per decision")
    lines.append(f"alerts firing at the end: {', '.join(a.firing) or 'none'}")
    if v.drift_at is None:
        return lines
    if v.shift_ms is None:
        lines.append(f"the population shift (after {v.drift_at} payments) was not reached")
        return lines
    if a.drift_pending_ms is None:
        lines.append(f"population shifted after {v.drift_at} payments; {DRIFT_ALERT} did not become active")
        return lines
    lines.append(
        f"population shifted after {v.drift_at} payments; {DRIFT_ALERT} ({a.drift_feature}) PSI above "
        f"threshold {(a.drift_pending_ms - v.shift_ms) / 1000:.1f}s after the shift"
        + (
            f", alert firing {(a.drift_firing_ms - v.shift_ms) / 1000:.1f}s after it (rule `for: 1m`)"
            if a.drift_firing_ms is not None
            else ", not yet firing"
        )
    )
    return lines


def cause(record: dict[str, Any]) -> str:
    """Why a payment was flagged: the card was already on the blocklist; a rule raised the action
    above what the score alone gives; or the model's score itself."""
    reasons = record.get("reasons") or []
    if reasons and reasons[0] == BLOCKLIST_REASON:
        return "blocklist"
    block = record.get("block_threshold")
    alone = model_action(
        ScoreResult(
            float(record["score"]),
            float(record["threshold"]),
            str(record["model_version"]),
            degraded=bool(record["degraded"]),
            block_threshold=None if block is None else float(block),
        )
    )
    return "rules" if severity(str(record.get("action"))) > severity(alone) else "model"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def action_lines(v: View) -> list[str]:
    """Precision and recall per action and the cause of the flags, in an analyst's words."""
    fraud = {e for e, t in v.labels.items() if t is not None}
    labelled = set(v.labels) & set(v.actions_by_id)
    lines = []
    for action, meaning in (
        ("REVIEW", "sent to review (card stays usable)"),
        ("BLOCK", "declined and card blocked"),
    ):
        ids = {e for e in labelled if v.actions_by_id[e] == action}
        tp = len(ids & fraud)
        lines.append(
            f"  {action:<7} {len(ids):>5} payments {meaning}: precision {_share(tp, len(ids))} "
            f"({tp} fraud), recall {_share(tp, len(fraud))} of all frauds"
        )
    flagged = {e for e in labelled if v.actions_by_id[e] != "APPROVE"}
    causes = Counter(v.cause_by_id[e] for e in flagged if e in v.cause_by_id)
    by_cause = {c: {e for e in flagged if v.cause_by_id.get(e) == c} for c in ("model", "rules", "blocklist")}
    lines.append(f"why flagged ({len(flagged)} labelled flags):")
    for c, text in (
        ("model", "the model's score"),
        ("rules", "a rule raised the action above the score's"),
        ("blocklist", "the card was already blocklisted (a decline, not a new judgement)"),
    ):
        ids = by_cause[c]
        lines.append(
            f"  {causes[c]:>5} ({_share(causes[c], len(flagged))}) {text}: precision {_share(len(ids & fraud), len(ids))}"
        )
    fresh = by_cause["model"] | by_cause["rules"]
    lines.append(
        f"without the blocklist declines: precision {_share(len(fresh & fraud), len(fresh))}, "
        f"recall {_share(len(fresh & fraud), len(fraud))}"
    )
    return lines


def fraud_type_lines(v: View) -> list[str]:
    """Per fraud type: how many of its payments were caught, by which action and for which cause,
    and the precision of the flags against that type (its frauds among them plus every false flag)."""
    labelled = set(v.labels) & set(v.actions_by_id)
    flagged = {e for e in labelled if v.actions_by_id[e] != "APPROVE"}
    false_flags = sum(1 for e in flagged if v.labels[e] is None)
    by_type: dict[str, set[str]] = {}
    for e in labelled:
        kind = v.labels[e]
        if kind is not None:
            by_type.setdefault(kind, set()).add(e)
    lines = ["per fraud type (recall = share of its payments flagged; precision = against all false flags):"]
    for kind, ids in sorted(by_type.items()):
        caught = ids & flagged
        actions = Counter(v.actions_by_id[e] for e in caught)
        causes = Counter(v.cause_by_id.get(e, "model") for e in caught)
        fresh = len(caught) - causes["blocklist"]
        lines.append(
            f"  {kind:<18} {len(caught):>4} of {len(ids):<4} caught, recall {_share(len(caught), len(ids))} "
            f"(without blocklist declines {_share(fresh, len(ids))}), precision "
            f"{_share(len(caught), len(caught) + false_flags)}; {actions['REVIEW']} reviewed, {actions['BLOCK']} "
            f"blocked; by the model {causes['model']}, by a rule {causes['rules']}, "
            f"by the blocklist {causes['blocklist']}"
        )
    return lines


def render(v: View, elapsed: float) -> list[str]:
    p50, p99 = v.latency()
    top = ", ".join(f"{r} ({n})" for r, n in v.reasons.most_common(3)) or "-"
    return [
        f"  {elapsed:5.0f}s  events in {len(v.input_ts):>7}   flagged {v.decisions['FLAGGED']:>6}   "
        f"approved {v.decisions['APPROVED']:>7}   DLQ {v.dlq:>4}   degraded {v.degraded:>5}   actions {v.actions:>6}",
        f"         end-to-end latency p50 {p50:6.1f} ms  p99 {p99:6.1f} ms   top reasons: {top}",
    ]


def summary(v: View, elapsed: float) -> str:
    fraud = {e for e, t in v.labels.items() if t is not None}
    labelled_flagged = v.flagged_ids & set(v.labels)
    tp = len(labelled_flagged & fraud)
    precision = tp / len(labelled_flagged) if labelled_flagged else 0.0
    recall = tp / len(fraud) if fraud else 0.0
    p50, p99 = v.latency()
    lines = [
        "",
        "=== demo summary ===",
        f"ran {elapsed:.0f}s: {len(v.input_ts)} payments in, {sum(v.decisions.values())} decisions "
        f"({v.decisions['FLAGGED']} flagged, {v.decisions['APPROVED']} approved), {v.dlq} dead letters, "
        f"{v.degraded} degraded, {v.actions} actions",
        f"end-to-end latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        f"against ground truth, flagged = REVIEW or BLOCK: precision {precision:.1%}, recall {recall:.1%} "
        f"({tp} of {len(fraud)} frauds flagged)",
        f"ground truth = the labels that arrived: {len(set(v.labels) & set(v.input_ts))} of "
        f"{len(v.input_ts)} payments (the simulator's labels come days late, 5% never); unlabelled "
        "payments are left out of every figure",
        *action_lines(v),
        *fraud_type_lines(v),
    ]
    lines += ["top reasons: " + "; ".join(f"{r} ({n})" for r, n in v.reasons.most_common(5))]
    return "\n".join(lines)


class DemoCli(BaseSettings):
    __doc__ = (
        "The whole pipeline on a generated stream: starts what is not running (the local stack, a model, the "
        "scoring service, the stream job, the action consumers, the console, the drift monitor, Prometheus), "
        "produces simulated payments with fraud scenarios and labels, shows what flows and which alerts fire, "
        "prints a summary and stops everything it started (unless KEEP_RUNNING=1). Each run starts from a "
        f"clean slate (its own Redis database, consumer groups and ids). {ENV_NOTE}"
    )

    model_config = SettingsConfigDict(
        **cli_config(
            "make demo",
            {
                "DEMO_DURATION_S": "duration",
                "DEMO_RATE": "rate",
                "DEMO_SEED": "seed",
                "DEMO_DRIFT": "drift",
                "KEEP_RUNNING": "keep-running",
            },
        ),
        frozen=True,
        case_sensitive=True,
        env_ignore_empty=True,
    )

    DEMO_DURATION_S: float = Field(60.0, gt=0, description="Seconds of traffic.")
    DEMO_RATE: float = Field(1000.0, gt=0, description="Payments per second.")
    DEMO_SEED: int = Field(7, description="Simulator seed.")
    DEMO_DRIFT: CliToggleFlag[bool] = Field(
        False,
        description="Shift the population a third of the way through (new countries, larger amounts, riskier "
        "merchants) and wait for the drift alert.",
    )
    KEEP_RUNNING: CliToggleFlag[bool] = Field(
        False, description="Leave everything running at the end (KEEP_RUNNING=1 make demo)."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_settings(DemoCli, argv)
    keep = args.KEEP_RUNNING
    LOGS.mkdir(parents=True, exist_ok=True)
    ensure_model(REPO_ROOT / "models")
    started: list[ManagedProcess] = []
    prom: LocalPrometheus | None = None
    drift_at = int(args.DEMO_RATE * args.DEMO_DURATION_S * DRIFT_FRACTION) if args.DEMO_DRIFT else None
    run = DemoRun.fresh()
    with ensure_stack(keep_running=keep) as cfg:
        redis_url = run.redis_url(cfg.redis_url)
        # What the job, the consumers and the producer share, validated here in the parent.
        env = child_env(
            ScoringClientSettings,
            KAFKA_BOOTSTRAP_SERVERS=cfg.bootstrap,
            SCHEMA_REGISTRY_URL=cfg.registry_url,
            REDIS_URL=redis_url,
            SCORING_URL="http://127.0.0.1:8000",
            SCORING_API_KEY=os.environ.get("SCORING_API_KEY", DEV_API_KEY),
        )
        try:
            _refuse_taken_ports()
            held = clear_demo_database(redis_url)
            print(f"{run.describe()} ({held} keys of an earlier run removed)")
            _start_pipeline(env, run, started)
            prom = _local_prometheus(cfg)
            print(f"prometheus: {prom.up()}")
            for part in ("actions", "drift-monitor"):
                wait_group_assigned(cfg.bootstrap, run.group(part))
            view = View(drift_at=drift_at)
            alert_view = AlertView()
            watcher = Watcher(cfg, view)
            watcher.start()
            producer = _start_producer(args, run, drift_at, env)
            started.append(producer)
            print(_running_banner(prom, drift_at))
            t0 = time.monotonic()
            _watch_until_settled(args, view, alert_view, prom, started, producer, t0)
            watcher.stop.set()
            watcher.join(timeout=5)
            print(summary(view, time.monotonic() - t0))
            print(case_line(redis_url))
            print("\n".join(drift_summary(view, alert_view, prom)))
            if producer.proc.returncode not in (0, None):
                print(f"producer exited with {producer.proc.returncode}; see {producer.log_path}")
        except KeyboardInterrupt:
            print("\ninterrupted")
        finally:
            _stop_or_keep(keep, started, prom)
    return 0


def _refuse_taken_ports() -> None:
    """Stop before starting anything when a port the demo binds is taken: a child that fails to bind
    would otherwise show up much later as a timeout with the cause buried in its log."""
    for port in (8000, CONSOLE_PORT):
        if port_open(port):
            raise SystemExit(
                f"error: port {port} is taken; stop what runs there (an earlier KEEP_RUNNING demo?)"
            )


def _start_pipeline(env: dict[str, str], run: DemoRun, started: list[ManagedProcess]) -> None:
    """Start the scoring service, the stream job, the consumers, the console and the drift monitor, each
    waited for until it serves; each is appended to ``started`` as soon as it runs, so the caller stops it
    even when a later one fails to start."""
    started.append(
        start_scoring_service(REPO_ROOT / "models", 8000, LOGS / "scoring.log", env["SCORING_API_KEY"])
    )
    job = start_job(env | run.job_env(), [], LOGS / "job.log")
    started.append(job)
    print("waiting for the stream job to start (its operators register their metrics when running) ...")
    # Operator metrics appear on the Prometheus reporter once the job's tasks run.
    wait_http(
        "http://127.0.0.1:9249/metrics",
        job,
        timeout_s=180,
        needle="flink_taskmanager_job_task_operator",
    )
    consumers = spawn("consumers", ["-m", "actions"], LOGS / "consumers.log", env | run.consumers_env())
    started.append(consumers)
    console = spawn(
        "console", ["-m", "console"], LOGS / "console.log", env | {"CONSOLE_PORT": str(CONSOLE_PORT)}
    )
    started.append(console)
    wait_http(f"{CONSOLE_URL}healthz", console, timeout_s=60)
    if port_open(MONITOR_PORT):
        raise SystemExit(f"error: port {MONITOR_PORT} (drift monitor metrics) is taken")
    monitor = spawn(
        "drift-monitor",
        ["-m", "monitoring"],
        LOGS / "drift-monitor.log",
        {
            **env,
            **run.monitor_env(),
            "MODEL_DIR": str(REPO_ROOT / "models"),
            "MONITOR_METRICS_PORT": str(MONITOR_PORT),
        },
    )
    started.append(monitor)
    wait_http(f"http://127.0.0.1:{MONITOR_PORT}/metrics", monitor)


def _local_prometheus(cfg: StackConfig) -> LocalPrometheus:
    """A Prometheus scraping every process of the demo, so the alert rules fire as they would in production."""
    return LocalPrometheus(
        cfg.state_dir,
        PROMETHEUS_PORT,
        {
            "scoring": "127.0.0.1:8000/metrics",
            "flink": "127.0.0.1:9249",
            "consumers": "127.0.0.1:9102/metrics",
            "drift-monitor": f"127.0.0.1:{MONITOR_PORT}/metrics",
        },
    )


def _start_producer(args: DemoCli, run: DemoRun, drift_at: int | None, env: dict[str, str]) -> ManagedProcess:
    """Start the payment producer last, once everything downstream is consuming, so no payment waits for a
    consumer that is not there yet."""
    return spawn(
        "producer",
        [
            *(
                "-m",
                "producers.produce",
                "--rate",
                str(args.DEMO_RATE),
                "--duration",
                str(args.DEMO_DURATION_S),
            ),
            *("--seed", str(args.DEMO_SEED), "--seed-profiles", "--no-progress", *run.producer_args()),
            *(("--drift-at", str(drift_at)) if drift_at is not None else ()),
        ],
        LOGS / "producer.log",
        env,
    )


def _running_banner(prom: LocalPrometheus, drift_at: int | None) -> str:
    """Where to look while the demo runs: metrics, alerts, logs and the analyst console."""
    return (
        "pipeline running. Metrics: scoring http://127.0.0.1:8000/metrics, job http://127.0.0.1:9249/metrics, "
        f"consumers http://127.0.0.1:9102/metrics, drift monitor http://127.0.0.1:{MONITOR_PORT}/metrics\n"
        f"Prometheus (rules: deploy/prometheus/alerts.yml) {prom.url}/alerts\n"
        f"logs in {LOGS.relative_to(REPO_ROOT)}/ (job.log, scoring.log, consumers.log, console.log, "
        "drift-monitor.log, producer.log). Ctrl-C stops.\n"
        f"analyst console: {CONSOLE_URL} ({console_login()})\n"
        + (f"the population shifts after {drift_at} payments\n" if drift_at is not None else "")
    )


def _watch_until_settled(
    args: DemoCli,
    view: View,
    alert_view: AlertView,
    prom: LocalPrometheus,
    started: list[ManagedProcess],
    producer: ManagedProcess,
    t0: float,
) -> None:
    """Redraw the live view every second until the producer has finished and every payment is accounted for
    (and, with drift, the drift alert fired), or the settle time ran out; stop at once when a process other
    than the producer dies, since the figures would then be meaningless. ``t0``: when the producer started."""
    tty = sys.stdout.isatty()
    settle_until: float | None = None
    last_print = 0.0
    while True:
        time.sleep(1.0)
        elapsed = time.monotonic() - t0
        for p in started:
            if p is not producer and not p.alive:
                raise SystemExit(f"error: {p.name} stopped. Last lines of {p.log_path}:\n{p.tail()}")
        poll_prometheus(prom, alert_view)
        lines = render(view, elapsed) + alert_lines(alert_view)
        if tty:
            sys.stdout.write(
                (f"\x1b[{len(lines)}A" if last_print else "") + "\n".join(f"\x1b[2K{x}" for x in lines) + "\n"
            )
            last_print = elapsed
        elif elapsed - last_print >= 5:
            print("\n".join(lines), flush=True)
            last_print = elapsed
        if not producer.alive and settle_until is None:
            settle_until = time.monotonic() + (DRIFT_WAIT_S if args.DEMO_DRIFT else 30)
        done = sum(view.decisions.values()) + view.dlq >= len(view.input_ts) > 0
        if args.DEMO_DRIFT:
            done = done and alert_view.drift_firing_ms is not None
        if settle_until is not None and (done or time.monotonic() > settle_until):
            time.sleep(2)
            break


def _stop_or_keep(keep: bool, started: list[ManagedProcess], prom: LocalPrometheus | None) -> None:
    """Stop what the demo started, newest first, unless KEEP_RUNNING asked to leave it up to explore."""
    if keep:
        print(
            "KEEP_RUNNING=1: the stack, scoring service, job, consumers, console, drift monitor and "
            f"Prometheus stay up (review cases at {CONSOLE_URL}); `make down` stops the stack, "
            "`python -m deploy.local.prometheus down` Prometheus"
        )
        return
    for p in reversed(started):
        p.stop(timeout_s=15)
    if prom is not None:
        prom.down()


if __name__ == "__main__":
    sys.exit(main())
