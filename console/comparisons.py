"""The model comparisons page: what ``make retrain`` decided, read-only.

``make retrain`` (:mod:`backtest.retrain`) writes one JSON file per challenger into
``<MODEL_DIR>/comparisons/``: the challenger and the live model backtested side by side on the same
held-out range, the promotion rule and its outcome. The console only reads those files, so it needs
no access to Kafka or to the models to show them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from console.templating import View

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


def comparison_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """One comparison as the values its section shows: the range, the side-by-side rows, the rule
    and the outcome (text; the template escapes it)."""
    window, held = doc.get("window") or {}, doc.get("held_out") or {}
    return {
        "challenger": str(doc.get("challenger")),
        "promoted": bool(doc.get("promoted")),
        "trained_from": str(window.get("from")),
        "trained_to": str(window.get("to")),
        "held_from": str(held.get("from")),
        "held_to": str(held.get("to")),
        "held_what": str(held.get("what", "")),
        "models": [str(name) for name in doc["models"]],
        "rows": _rows(doc),
        "rule": str(doc.get("rule", "")),
        "now_live": str(doc.get("now_live")),
        "shadow": str(doc.get("shadow") or "none"),
    }


def comparisons_context(model_dir: Path) -> dict[str, Any]:
    """What the comparisons page shows: every recent comparison, newest first, the files that could
    not be read, and the folder they are read from."""
    docs, problems = load_comparisons(model_dir)
    return {
        "comparisons": [comparison_summary(d) for d in docs],
        "problems": problems,
        "folder": str(model_dir / COMPARISONS_DIR),
    }


def comparisons_body(model_dir: Path) -> str:
    """The page body as HTML (without the frame): every recent comparison, or a line saying there is none."""
    return View("comparisons_body.html", comparisons_context(model_dir)).render()
