"""The report folder of a run: ``report.md``, ``metrics.json``, ``scores.csv.gz`` and PNG plots.

Everything is written into ``<out>/.<run_id>.partial`` and renamed to ``<out>/<run_id>`` only
when complete, so a folder named after a run is always a whole result.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backtest.document import BacktestReport
from backtest.evaluate import Joined, pr_curve

PLOTS = ("pr_curves.png", "score_distributions.png", "cost_vs_threshold.png", "confusion_matrices.png")


def staging_dir(out: Path, run_id: str) -> Path:
    path = out / f".{run_id}.partial"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def publish(staging: Path, out: Path, run_id: str) -> Path:
    """Rename the finished staging folder to its final name."""
    final = out / run_id
    staging.rename(final)
    return final


def write_scores(path: Path, joined: Mapping[str, Joined]) -> None:
    """One row per model and labelled event: enough to evaluate any threshold without a re-run."""
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "model_version",
                "event_id",
                "score",
                "flagged",
                "blocklisted",
                "is_fraud",
                "fraud_type",
                "amount_eur",
            ]
        )
        for version, j in joined.items():
            for row in zip(
                j.event_id,
                j.score,
                j.decided_flagged,
                j.blocklisted,
                j.is_fraud,
                j.fraud_type,
                j.amount_eur,
                strict=True,
            ):
                w.writerow(
                    [
                        version,
                        row[0],
                        repr(float(row[1])),
                        int(row[2]),
                        int(row[3]),
                        int(row[4]),
                        row[5],
                        round(float(row[6]), 2),
                    ]
                )


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, imported when a report is drawn: importing it
    costs every process that only reads or evaluates (the CLI's --help, the unit tests) half a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(folder: Path, joined: Mapping[str, Joined], metrics: Mapping[str, Any]) -> list[str]:
    """Write the four plots; returns their file names."""
    plt = _pyplot()
    models = list(joined)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for v in models:
        j = joined[v]
        if j.is_fraud.any() and (~j.is_fraud).any():
            recall, precision = pr_curve(j)
            ap = metrics[v]["pr_auc"]
            ax.plot(recall, precision, label=f"{v} (average precision {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    if ax.lines:
        ax.legend(loc="lower left", fontsize=8)
    else:  # no model has both frauds and legitimate payments labelled: no curve to draw
        ax.text(0.5, 0.5, "no curve: needs labelled frauds and legitimate payments", ha="center", fontsize=9)
    _save(fig, folder / PLOTS[0])

    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    bins = np.linspace(0, 1, 51)
    for ax, v in zip(axes[0], models, strict=True):
        j = joined[v]
        for scores, label in ((j.score[~j.is_fraud], "legitimate"), (j.score[j.is_fraud], "fraud")):
            if len(scores):  # an empty class has no density (and numpy would divide by zero)
                ax.hist(scores, bins=bins, alpha=0.6, label=label, density=True)
        ax.axvline(metrics[v]["threshold"], color="k", linestyle="--", label="threshold")
        # Without labelled events the histograms are empty, and an empty axis cannot be log-scaled.
        log_scale = bool(j.labelled)
        ax.set(yscale="log" if log_scale else "linear", xlabel="score", ylabel="density (log)", title=v)
        ax.legend(fontsize=8)
    _save(fig, folder / PLOTS[1])

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for v in models:
        curve = metrics[v]["cost_curve"]
        line = ax.plot(curve["thresholds"], curve["total_cost_eur"], label=v)[0]
        ax.axvline(metrics[v]["threshold"], color=line.get_color(), linestyle="--", linewidth=1)
    ax.set(
        xlabel="threshold",
        ylabel="EUR (missed fraud + reviews + false blocks)",
        title="Cost against threshold",
    )
    ax.legend(fontsize=8)
    _save(fig, folder / PLOTS[2])

    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, v in zip(axes[0], models, strict=True):
        m = metrics[v]["at_threshold"]
        grid = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (r, c), n in np.ndenumerate(grid):
            ax.text(c, r, f"{n:,}", ha="center", va="center", color="black")
        ax.set(
            xticks=[0, 1], xticklabels=["approved", "flagged"], yticks=[0, 1], yticklabels=["legit", "fraud"]
        )
        ax.set_title(f"{v}\n@ {metrics[v]['threshold']:.3f}", fontsize=9)
    _save(fig, folder / PLOTS[3])
    return list(PLOTS)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _eur(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The analyst's report from the metrics document (the same content as metrics.json)."""
    lines = _replay_section(doc)
    lines += _throughput_section(doc)
    lines += _side_by_side_section(doc)
    lines += _card_precision_section(doc)
    lines += _comparison_section(doc)
    lines += _other_thresholds_section(doc)
    lines += _scenario_section(doc)
    lines += _cost_curve_section(doc)
    lines += _parity_section(doc.get("parity"))
    notes = doc.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in doc["plots"]]
    lines += ["", "Metrics: `metrics.json`. Scores per labelled event and model: `scores.csv.gz`.", ""]
    return "\n".join(lines)


def _replay_section(doc: Mapping[str, Any]) -> list[str]:
    """What was replayed, with which labels, enrichment, job settings and cost model: the reader must know
    what the figures below are figures of before reading them."""
    run, models, ref = doc["run"], doc["models"], doc["reference_model"]
    return [
        f"# Backtest {run['run_id']}",
        "",
        "## What was replayed",
        "",
        f"- Source: {run['source']}",
        f"- Range: {run['range']['requested']} -> {run['range']['resolved']}",
        f"- Events in range: {run['range']['events']:,} records; warm-up before it (velocity state only, not "
        f"evaluated): {run['range']['warmup_events']:,}",
        f"- Dead-letter-bound records in range: {run['dead_letters']['total']:,}"
        + (
            f" ({', '.join(f'{k}={v}' for k, v in run['dead_letters']['by_type'].items())})"
            if run["dead_letters"]["total"]
            else ""
        ),
        f"- Labels: {run['labels_source']}; by source: "
        + (", ".join(f"{k} {v:,}" for k, v in run.get("labels_by_source", {}).items()) or "none"),
        f"- Enrichment: **{run['enrichment']['mode']}** — {run['enrichment']['description']}",
        f"- Models: {', '.join(models)} (reference: live model `{ref}`)",
        "- Job: `flink_jobs.scoring_job` (the live job's code), bounded, one run per model; settings "
        "differing from live: " + ", ".join(f"{k}={v}" for k, v in run["job_overrides"].items()),
        f"- Started {run['started_at']}, took {run['duration_s']:.1f} s in total",
        f"- Business cost (fraud_core.cost.CostModel, the one the trainer minimises): a missed fraud costs "
        f"its amount, at least {doc['cost_model']['min_missed_fraud_eur']:g} EUR; each REVIEW "
        f"{doc['cost_model']['review_cost_eur']:g} EUR; each legitimate payment BLOCKed "
        f"{doc['cost_model']['false_block_cost_eur']:g} EUR; reviewed or blocked fraud is caught",
        f"- Card precision@k: k = {doc['k']} cards reviewed per UTC day (those with the highest score "
        "that day); the share of them with a fraud that day; cards tied at the k-th score share the "
        "slots left; a day with fewer cards reviews them all",
    ]


def _throughput_section(doc: Mapping[str, Any]) -> list[str]:
    """Replay speed per model, wall and processing apart, since start-up dominates short replays."""
    lines = [
        "",
        "## Replay throughput",
        "",
        "| model | events replayed | wall time (s) | events/s (wall, incl. start-up) | events/s "
        "(processing) |",
        "|---|---:|---:|---:|---:|",
    ]
    for v, t in doc["throughput"].items():
        lines.append(
            f"| {v} | {t['events_replayed']:,} | {t['wall_s']:.1f} | {t['events_per_s_wall']:,.0f} | "
            f"{t['events_per_s_processing']:,.0f} |"
        )
    return lines


def _side_by_side_section(doc: Mapping[str, Any]) -> list[str]:
    """Every model at its own threshold in one table, the live one marked, so they compare at a glance."""
    models, ref = doc["models"], doc["reference_model"]
    lines = [
        "",
        "## Models side by side (each at its own threshold)",
        "",
        f"| model | threshold | labelled | AUC ROC | average precision | card precision@{doc['k']} (mean "
        "per day) | recall@1%FPR | recall@5%FPR | precision | recall | F1 | "
        "flagged rate | fraud EUR caught | fraud EUR missed | review EUR | false block EUR | total cost EUR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, m in models.items():
        a = m["at_threshold"]
        lines.append(
            f"| {v}{' (live)' if v == ref else ''} | {m['threshold']:.4f} | {m['events']['labelled']:,} | "
            f"{_num(m['roc_auc'])} | {_num(m['pr_auc'])} | {_num(m['card_precision_at_k']['mean'])} | "
            f"{_pct(m['recall_at_fpr']['0.01'])} | {_pct(m['recall_at_fpr']['0.05'])} | "
            f"{_pct(a['precision'])} | "
            f"{_pct(a['recall'])} | {_num(a['f1'])} | {_pct(a['flagged_rate'])} | "
            f"{_eur(a['fraud_eur_caught'])} | "
            f"{_eur(a['fraud_eur_missed'])} | {_eur(a['review_cost_eur'])} | "
            f"{_eur(a['false_block_cost_eur'])} | {_eur(a['total_cost_eur'])} |"
        )
    return lines


def _card_precision_section(doc: Mapping[str, Any]) -> list[str]:
    """Card precision@k day by day: the mean hides the days a model fails the review team."""
    lines = [
        "",
        f"## Card precision@{doc['k']} per UTC day",
        "",
        "| model | day | cards | reviewed | cards with fraud | card precision |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for v, m in doc["models"].items():
        for day, d in m["card_precision_at_k"]["per_day"].items():
            lines.append(
                f"| {v} | {day} | {d['cards']:,} | {d['reviewed']:,} | {d['fraud_cards']:,} | "
                f"{_num(d['precision'])} |"
            )
    return lines


def _comparison_section(doc: Mapping[str, Any]) -> list[str]:
    """Each candidate minus the live model (nothing when only one model ran): the figure a promotion
    decision is made on."""
    ref = doc["reference_model"]
    if len(doc["models"]) <= 1:
        return []
    lines = [
        "",
        f"Difference to the live model `{ref}` (model minus live):",
        "",
        "| model | AUC ROC | average precision | card precision@k | recall | precision | flagged rate | "
        "total cost EUR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, d in doc["comparison"].items():
        if v != ref:
            lines.append(
                f"| {v} | {_num(d['roc_auc'])} | {_num(d['pr_auc'])} | "
                f"{_num(d['card_precision_at_k_mean'])} | {_num(d['recall'])} | {_num(d['precision'])} | "
                f"{_num(d['flagged_rate'])} | {_eur(d['total_cost_eur'])} |"
            )
    return lines


def _other_thresholds_section(doc: Mapping[str, Any]) -> list[str]:
    """The models at the thresholds the analyst asked for (nothing when none were), re-scored from the
    recorded scores rather than by another replay."""
    if not doc["extra_thresholds"]:
        return []
    lines = [
        "",
        "## Other thresholds (from the recorded scores)",
        "",
        "| model | threshold | precision | recall | F1 | flagged rate | total cost EUR |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v, m in doc["models"].items():
        for t, a in m["at_thresholds"].items():
            lines.append(
                f"| {v} | {t} | {_pct(a['precision'])} | {_pct(a['recall'])} | {_num(a['f1'])} | "
                f"{_pct(a['flagged_rate'])} | {_eur(a['total_cost_eur'])} |"
            )
    return lines


def _scenario_section(doc: Mapping[str, Any]) -> list[str]:
    """What each model catches per fraud scenario: an overall recall can hide a scenario missed entirely."""
    lines = [
        "",
        "## Per fraud scenario (own threshold)",
        "",
        "| model | scenario | events | flagged | share flagged | EUR | EUR flagged |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for v, m in doc["models"].items():
        for kind, s in m["per_scenario"].items():
            lines.append(
                f"| {v} | {kind} | {s['events']:,} | {s['flagged']:,} | {_pct(s['flagged_share'])} | "
                f"{_eur(s['amount_eur'])} | {_eur(s['amount_eur_flagged'])} |"
            )
    return lines


def _cost_curve_section(doc: Mapping[str, Any]) -> list[str]:
    """Each model's cheapest threshold next to its own: how much its chosen threshold leaves on the table."""
    lines = ["", "## Cost curve", ""]
    for v, m in doc["models"].items():
        c = m["cost_curve"]
        lines.append(
            f"- {v}: cheapest threshold {c['best_threshold']} at {_eur(c['best_total_cost_eur'])} EUR "
            f"(own threshold {m['threshold']:.4f}: {_eur(m['at_threshold']['total_cost_eur'])} EUR)"
        )
    return lines


def _parity_section(parity: Mapping[str, Any] | None) -> list[str]:
    """Whether the replay decided as live did, event by event, with the first differences shown: the
    evidence that the backtest's figures are the live job's."""
    lines = ["", "## Parity with live", ""]
    if not parity:
        lines.append(
            "Not checked (the live model was not among the models and --parity-with-live was not given)."
        )
        return lines
    lines.append(f"Live decisions read from {parity['live_topics']} (read-only, no offsets committed).")
    lines.append("")
    p = parity["result"]
    verdict = {"identical": "**identical**", "differences": "**differences found**"}.get(
        p["verdict"], p["verdict"]
    )
    lines.append(
        f"- `{p['model_version']}`: {verdict}: {p['compared']:,} decisions compared, {p['identical']:,} "
        "identical, "
        f"{p['differing']:,} different; {p['not_scored_live']:,} events have no live decision"
        + (
            f"; scored live by other versions: {p['scored_live_by_other_models']}"
            if p["scored_live_by_other_models"]
            else ""
        )
    )
    for d in p["differences"][:20]:
        lines.append(
            f"  - `{d['event_id']}`: "
            + "; ".join(f"{k}: {_short(v)}" for k, v in d.items() if k != "event_id")
        )
    if p["differing"] > 20:
        lines.append(f"  - ... {p['differing'] - 20} more (up to 50 in metrics.json)")
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def write(folder: Path, report: BacktestReport, joined: Mapping[str, Joined]) -> None:
    """Plots, scores, metrics.json and report.md into ``folder``."""
    doc = report.model_dump(mode="json")
    plots = plot_all(folder, joined, doc["models"])
    full = {**doc, "plots": plots}
    write_scores(folder / "scores.csv.gz", joined)
    (folder / "metrics.json").write_text(json.dumps(full, indent=2, default=str) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(full), encoding="utf-8")
