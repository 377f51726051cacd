"""Our features and model against a plain scikit-learn baseline on the file's raw columns, on a
labelled history we did not generate (synccfd), with the same time split.

``python examples/synccfd_compare.py --file data/synccfd.parquet --mapping examples/synccfd.toml``

Ours: each row converted exactly as ``make import`` converts it (:mod:`producers.history`), every
label known ``delay`` after its payment (the mapping's ``[label]``), the stream's features replayed
by :func:`fraud_core.entities.replay` (the job's code), and :func:`inference_service.training.train.train`
(the same split, model, calibration and cost-based thresholds as ``make model``). The baseline: a
``HistGradientBoostingClassifier`` with default settings on every numeric column of the file
(categorical text columns ordinal-encoded), trained on the same training period. Both are scored on
the same held-out period: average precision, AUC ROC and card precision@k per day (the card is the
mapping's ``card_id`` column). Writes the figures as JSON next to ``--out`` and prints a table.

This is the offline twin of the path through the topics (``make import``, ``make model
--from-topics``, ``make backtest``; ``tests/backtest/test_synccfd_history.py`` runs that one).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field
from pydantic_settings import BaseSettings
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from backtest.evaluate import card_precision_at_k
from fraud_core.cli import cli_config, fail, parse_settings
from fraud_core.entities import StreamFeatures, replay
from fraud_core.features import build_features, to_row
from fraud_core.labels import Label
from fraud_core.reference import to_eur
from inference_service.training.train import Dataset, TrainConfig, split_by_time, train
from producers.history import Row, convert, load_mapping, read_table


class CompareCli(BaseSettings):
    """Compare our features and model with a raw-column scikit-learn baseline on a labelled file."""

    model_config = cli_config("python examples/synccfd_compare.py", {})

    file: Path = Field(description="The labelled history (CSV or Parquet).")
    mapping: Path = Field(Path("examples/synccfd.toml"), description="Its mapping file (make import's).")
    k: int = Field(100, ge=1, description="Cards reviewed per day for card precision@k.")
    out: Path = Field(Path("examples/results/synccfd_compare.json"), description="Where the figures go.")


def our_dataset(rows: list[Row], delay_ms: int) -> tuple[Dataset, list[str]]:
    """The rows replayed through the job's feature code, in event-time order; labels known
    ``delay_ms`` after each payment (the mapping's), frauds only feeding the label features."""
    rows = sorted(rows, key=lambda r: (r.txn.event_time, r.number))
    txns = [r.txn for r in rows]
    labels = [
        Label(
            r.txn.event_id,
            True,
            int(r.label["labelled_at"]),
            r.txn.card_id,
            r.txn.merchant_id,
            r.txn.event_time,
        )
        for r in rows
        if r.label is not None and r.label["is_fraud"]
    ]
    engine = StreamFeatures(delay_ms)
    x = [
        to_row(build_features(t, s, None))
        for t, s in tqdm(replay(txns, labels, engine), total=len(txns), desc="replay", unit="ev")
    ]
    data = Dataset(
        x=np.asarray(x, dtype=np.float64),
        y=np.asarray([int(bool(r.label and r.label["is_fraud"])) for r in rows], dtype=np.int8),
        fraud_type=np.asarray([(r.label or {}).get("fraud_type") or "" for r in rows], dtype=np.str_),
        amount_eur=np.asarray([to_eur(t.amount_minor, t.currency) for t in txns], dtype=np.float64),
        event_time=np.asarray([t.event_time for t in txns], dtype=np.int64),
    )
    return data, [t.card_id for t in txns]


def raw_columns(table: pa.Table, order: list[int], leave_out: set[str]) -> np.ndarray:
    """Every column of the file as numbers (text ordinal-encoded, times as epoch seconds), rows in
    ``order``; the label columns left out."""
    columns = []
    for name in table.column_names:
        if name in leave_out:
            continue
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            values = np.asarray(col.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        else:
            text = [str(v) for v in col.to_pylist()]
            codes = {v: i for i, v in enumerate(sorted(set(text)))}
            values = np.asarray([codes[v] for v in text], dtype=np.float64)
        columns.append(values[order])
    return np.column_stack(columns)


def scores_of(
    name: str, y: np.ndarray, scores: np.ndarray, cards: list[str], times: np.ndarray, k: int
) -> dict[str, Any]:
    at_k = card_precision_at_k(cards, times, scores, y.astype(bool), k)
    return {
        "system": name,
        "average_precision": round(float(average_precision_score(y, scores)), 4),
        "auc_roc": round(float(roc_auc_score(y, scores)), 4),
        f"card_precision_at_{k}": None if at_k["mean"] is None else round(float(at_k["mean"]), 4),
    }


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(CompareCli, sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    mapping = load_mapping(settings.mapping)
    if mapping.label is None or mapping.label.delay_ms is None:
        fail("the mapping needs a [label] section with a delay (labels known delay after each payment)")
    table = read_table(settings.file, mapping)
    now_ms = time.time_ns() // 1_000_000
    rows = [r for r in convert(table, mapping, now_ms) if isinstance(r, Row)]
    if len(rows) < table.num_rows:
        print(f"{table.num_rows - len(rows)} rows refused by the validation are left out", file=sys.stderr)  # noqa: T201 - CLI output
    data, cards = our_dataset(rows, mapping.label.delay_ms)
    config = TrainConfig()
    _train, _cal, test = split_by_time(data, config)
    model, card = train(data, config, {"file": settings.file.name, "mapping": settings.mapping.name})
    held = data.event_time >= test.event_time.min()
    ours = model.predict_proba(data.x[held])[:, 1]

    order = sorted(range(len(rows)), key=lambda i: (rows[i].txn.event_time, rows[i].number))
    file_order = [rows[i].number - 1 for i in order]
    label_columns = {mapping.label.is_fraud, mapping.label.fraud_type or ""}
    raw = raw_columns(table, file_order, label_columns)
    fit_rows = data.event_time < _cal.event_time.min()
    baseline = HistGradientBoostingClassifier(random_state=config.seed).fit(raw[fit_rows], data.y[fit_rows])
    base = baseline.predict_proba(raw[held])[:, 1]

    held_cards = [c for c, h in zip(cards, held, strict=True) if h]
    times = data.event_time[held]
    y = data.y[held]
    results = [
        scores_of("ours (features of the job + make model)", y, ours, held_cards, times, settings.k),
        scores_of("baseline (HGB on the file's raw columns)", y, base, held_cards, times, settings.k),
    ]
    ratio = {
        key: round(results[0][key] / results[1][key], 2) if results[1][key] else None
        for key in ("average_precision", f"card_precision_at_{settings.k}")
    }
    summary = {
        "file": settings.file.name,
        "rows": table.num_rows,
        "held_out": {
            "events": int(held.sum()),
            "frauds": int(y.sum()),
            "from": int(times.min()),
            "to": int(times.max()),
        },
        "results": results,
        "ours_over_baseline": ratio,
        "ablation_groups": {g: e["held_out_pr_auc"] for g, e in card.ablation_groups.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(summary, indent=2) + "\n")
    width = max(len(r["system"]) for r in results)
    print(f"{'system':<{width}}  AP      AUC     card P@{settings.k}")  # noqa: T201 - CLI output
    for r in results:
        at_k = r[f"card_precision_at_{settings.k}"]
        print(f"{r['system']:<{width}}  {r['average_precision']:.4f}  {r['auc_roc']:.4f}  {at_k}")  # noqa: T201
    print(f"ours / baseline: {ratio}   ({summary['seconds']} s; figures in {settings.out})")  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    sys.exit(main())
