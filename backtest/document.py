"""The report of a backtest as a typed model: what ``metrics.json`` holds and what ``report.md``,
the plots and the one-screen summary are rendered from. Per-model metrics keep the shape
:func:`backtest.evaluate.evaluate_model` gives them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartitionInfo(_Model):
    partition: int
    start: int
    end: int
    warmup_start: int


class RangeInfo(_Model):
    topic: str
    requested: str
    resolved: str
    partitions: list[PartitionInfo]
    events: int
    warmup_events: int


class DeadLetters(_Model):
    total: int
    by_type: dict[str, int]


class EnrichmentInfo(_Model):
    mode: str
    redis_url: str
    source_url: str | None
    profiles: int
    blocklisted_cards: int
    taken_at: str
    description: str


class RunInfo(_Model):
    run_id: str
    started_at: str
    duration_s: float
    source: str
    range: RangeInfo
    dead_letters: DeadLetters
    labels_source: str
    labels_by_source: dict[str, int]  # labelled payments of the run by the label's source
    enrichment: EnrichmentInfo
    job_overrides: dict[str, Any]
    topics: dict[str, list[str]]
    topics_deleted: bool


class Throughput(_Model):
    events_replayed: int
    wall_s: float
    processing_s: float
    events_per_s_wall: float
    events_per_s_processing: float


class Parity(_Model):
    live_topics: list[str]
    result: dict[str, Any]


class BacktestReport(_Model):
    """Everything one run found; ``metrics.json`` is its JSON."""

    run: RunInfo
    cost_model: dict[str, float]  # fraud_core.cost.CostModel's prices, the trainer's by default
    k: int  # daily review capacity of card precision@k
    extra_thresholds: list[float]
    reference_model: str
    models: dict[str, dict[str, Any]]
    comparison: dict[str, dict[str, float | None]]
    throughput: dict[str, Throughput]
    parity: Parity | None
    notes: list[str]

    def summary(self, report_path: str) -> str:
        """The few lines printed at the end of a run."""
        run = self.run
        lines = [
            f"backtest {run.run_id}: {run.range.resolved}",
            f"  enrichment {run.enrichment.mode}, dead letters in range {run.dead_letters.total}, "
            f"took {run.duration_s:.1f} s",
        ]
        for v, m in self.models.items():
            a, t = m["at_threshold"], self.throughput[v]
            pr = "n/a" if m["pr_auc"] is None else f"{m['pr_auc']:.4f}"
            roc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
            cp = m["card_precision_at_k"]["mean"]
            cpk = "n/a" if cp is None else f"{cp:.4f}"
            lines.append(
                f"  {v}{' (live)' if v == self.reference_model else ''}: AUC ROC {roc}, average precision "
                f"{pr}, card precision@{self.k} {cpk}, precision "
                f"{a['precision']}, recall {a['recall']}, "
                f"flagged {a['flagged']}, cost {a['total_cost_eur']:,.2f} EUR; "
                f"{t.events_per_s_processing:,.0f} events/s"
            )
        if self.parity:
            p = self.parity.result
            lines.append(
                f"  parity with live: {p['verdict']} ({p['compared']} compared, {p['differing']} different)"
            )
        lines.append(f"  report: {report_path}")
        return "\n".join(lines) + "\n"
