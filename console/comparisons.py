"""The model comparisons page: what ``make retrain`` decided, read-only.

``make retrain`` (:mod:`backtest.retrain`) writes one JSON file per challenger into
``<MODEL_DIR>/comparisons/``: the challenger and the live model backtested side by side on the same
held-out range, the promotion rule and its outcome. The console only reads those files, so it needs
no access to Kafka or to the models to show them.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMPARISONS_DIR = "comparisons"
SHOWN = 10


def comparison_path(model_dir: Path, challenger: str) -> Path:
    """Where the comparison of ``challenger`` is written (and read from)."""
    return model_dir / COMPARISONS_DIR / f"{challenger}.json"


def load_comparisons(model_dir: Path, limit: int = SHOWN) -> tuple[list[dict[str, Any]], list[str]]:
    """The newest ``limit`` comparisons (by file time), and a note per file that could not be read."""
    folder = model_dir / COMPARISONS_DIR
    files = (
        sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        if folder.is_dir()
        else []
    )
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in files[:limit]:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
                raise ValueError("no 'models' object")
        except (OSError, ValueError) as exc:
            log.warning("comparison %s unreadable: %s", path.name, exc)
            problems.append(f"{path.name}: unreadable ({exc})")
            continue
        out.append(doc)
    return out, problems


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else "-"


def _rows(doc: dict[str, Any]) -> list[tuple[str, list[str]]]:
    models: dict[str, Any] = doc["models"]
    metrics = [m.get("metrics", {}) for m in models.values()]
    rows = [
        ("role", [str(m.get("role", "")) for m in models.values()]),
        ("cost (EUR)", [_num(m.get("cost_eur"), 2) for m in metrics]),
        ("average precision", [_num(m.get("average_precision")) for m in metrics]),
        (
            f"card precision@{doc.get('k', '?')} (mean per day)",
            [_pct((m.get("card_precision_at_k") or {}).get("mean")) for m in metrics],
        ),
    ]
    for action in ("REVIEW", "BLOCK", "flagged"):
        for what in ("precision", "recall"):
            rows.append(
                (
                    f"{action} {what}",
                    [_pct((m.get("actions") or {}).get(action, {}).get(what)) for m in metrics],
                )
            )
    rows.append(
        ("labelled / decided", [f"{m.get('labelled', 0):,} / {m.get('decided', 0):,}" for m in metrics])
    )
    return rows


def comparison_html(doc: dict[str, Any]) -> str:
    """One comparison as a section: the range, the side-by-side table, the rule and the outcome."""
    names = list(doc["models"])
    head = "".join(f'<th class="num">{escape(n)}</th>' for n in names)
    body = "".join(
        f"<tr><td>{escape(label)}</td>"
        + "".join(f'<td class="num">{escape(v)}</td>' for v in values)
        + "</tr>"
        for label, values in _rows(doc)
    )
    held = doc.get("held_out", {})
    outcome = "promoted to live" if doc.get("promoted") else "not promoted (shadow)"
    return (
        f'<section class="box"><h2>Challenger {escape(str(doc.get("challenger")))}: {escape(outcome)}</h2>'
        f"<p>Trained on {escape(str(doc.get('window', {}).get('from')))} .. "
        f"{escape(str(doc.get('window', {}).get('to')))}; both models backtested through the live job on "
        f"{escape(str(held.get('from')))} .. {escape(str(held.get('to')))} "
        f"({escape(str(held.get('what', '')))}).</p>"
        f"<table><tr><th></th>{head}</tr>{body}</table>"
        f"<p>Rule: {escape(str(doc.get('rule', '')))}</p>"
        f"<p>Now live: <b>{escape(str(doc.get('now_live')))}</b>; shadow: "
        f"<b>{escape(str(doc.get('shadow') or 'none'))}</b>.</p></section>"
    )


def comparisons_body(model_dir: Path) -> str:
    """The page body: every recent comparison, newest first, or a line saying there is none."""
    docs, problems = load_comparisons(model_dir)
    notes = "".join(f'<p class="err">{escape(p)}</p>' for p in problems)
    if not docs:
        return (
            f"<h1>Model comparisons</h1>{notes}<p>No comparison yet in "
            f"{escape(str(model_dir / COMPARISONS_DIR))}: run <code>make retrain</code>.</p>"
        )
    return "<h1>Model comparisons</h1>" + notes + "".join(comparison_html(d) for d in docs)
