"""``--export PATH.parquet``: one row per replayed event of one model, for a fraud team's own tools.

The columns are those of docs/INTERFACES.md ("Bring your own history"), plus ``model_version``.
Unlike the report, unlabelled events are kept, with ``is_fraud`` null: the file holds every
decision, and the labels known when the run read them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from backtest.evaluate import epoch_ms
from backtest.exceptions import BacktestError

SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("card_id", pa.string(), nullable=False),
        pa.field("merchant_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("rules_fired", pa.list_(pa.string()), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=True),
        pa.field("model_version", pa.string(), nullable=False),
    ]
)


def table(
    decisions: Iterable[Mapping[str, Any]], labels: Mapping[str, Mapping[str, Any]], model_version: str
) -> pa.Table:
    """The export of one model's decisions: one row per event_id (the first decision of an event
    delivered twice, as :func:`backtest.evaluate.join` counts it), in the order given."""
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    seen: set[str] = set()
    for d in decisions:
        event_id = str(d["event_id"])
        if event_id in seen:
            continue
        seen.add(event_id)
        label = labels.get(event_id)
        cols["event_id"].append(event_id)
        cols["user_id"].append(str(d["user_id"]))
        cols["card_id"].append(str(d["card_id"]))
        cols["merchant_id"].append(str(d["merchant_id"]))
        cols["event_time"].append(epoch_ms(d["event_time"]))
        cols["amount_minor"].append(int(d["amount_minor"]))
        cols["score"].append(float(d["score"]))
        cols["action"].append(str(d["action"]))
        cols["rules_fired"].append([str(r) for r in d.get("rules_fired") or []])
        cols["is_fraud"].append(None if label is None else bool(label["is_fraud"]))
        cols["model_version"].append(model_version)
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def write(path: Path, data: pa.Table) -> None:
    """Write ``data`` to ``path`` whole or not at all (a hidden temporary file renamed at the end).

    Raises:
        BacktestError: the file could not be written (the message names it).
    """
    tmp = path.with_name(f".{path.name}.partial")
    try:
        pq.write_table(data, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BacktestError(f"--export {path}: could not write the Parquet file: {exc}") from exc
