"""The simulated stream as Avro container files, for training and for replays.

A stream is two files side by side, both plain Avro readable by any Avro tool:

* ``<name>.avro``: the events, records of ``schemas/payment_initiated.avsc``, in stream order;
* ``<name>.labels.avro``: one ``schemas/label.avsc`` record per event, in the same order
  (``event_id`` joins them; ``labelled_at`` = event time + the chargeback delay).

The events file's metadata holds the :class:`SimConfig` that generated it (key ``fraud.simconfig``),
so a replay can rebuild and seed the same user profiles.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import fastavro
from fastavro.write import Writer

import schemas
from fraud_core.exceptions import FraudPipelineError
from fraud_core.simulator import SimConfig, SimEvent
from fraud_core.transaction import validate

CONFIG_KEY = "fraud.simconfig"


def labels_path(events_path: Path) -> Path:
    """Where the labels of an events file live: ``x.avro`` -> ``x.labels.avro``."""
    return events_path.with_name(f"{events_path.stem}.labels{events_path.suffix or '.avro'}")


class StreamFileWriter:
    """Appends events and their labels to the two files of a stream (a context manager)."""

    def __init__(self, path: Path, config: SimConfig | None = None, label_delay_ms: int = 0) -> None:
        self.path = path
        self.label_delay_ms = label_delay_ms
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {CONFIG_KEY: json.dumps(asdict(config))} if config else {}
        self._files: list[IO[bytes]] = []
        self._events = Writer(
            self._open(path), schemas.load(schemas.TRANSACTION), codec="deflate", metadata=metadata
        )
        self._labels = Writer(self._open(labels_path(path)), schemas.load(schemas.LABEL), codec="deflate")

    def _open(self, path: Path) -> IO[bytes]:
        f = path.open("wb")
        self._files.append(f)
        return f

    def write(self, event: SimEvent) -> None:
        self._events.write(event.txn.to_record())
        self._labels.write(event.label_record(self.label_delay_ms))
        self.count += 1

    def close(self) -> None:
        for writer in (self._events, self._labels):
            writer.flush()
        for f in self._files:
            f.close()

    def __enter__(self) -> StreamFileWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_stream(path: Path, events: Iterable[SimEvent], config: SimConfig | None = None) -> int:
    """Write ``events`` to ``path`` and its labels file; returns the number written."""
    with StreamFileWriter(path, config) as writer:
        for event in events:
            writer.write(event)
        return writer.count


def read_config(path: Path) -> SimConfig | None:
    """The :class:`SimConfig` recorded in an events file, if it has one."""
    with path.open("rb") as f:
        raw = fastavro.reader(f).metadata.get(CONFIG_KEY)
    return SimConfig(**json.loads(raw)) if raw else None


def read_stream(path: Path) -> Iterator[SimEvent]:
    """Read back a stream written by :class:`StreamFileWriter`, events joined with their labels.

    Without a labels file every event reads as legitimate (``is_fraud`` False, unknown truth).

    Raises:
        FraudPipelineError: when the labels file does not line up with the events file.
    """
    lpath = labels_path(path)
    with path.open("rb") as ef:
        if not lpath.exists():
            for record in fastavro.reader(ef):
                yield SimEvent(validate(_as_dict(record)), False, None)
            return
        with lpath.open("rb") as lf:
            labels = iter(fastavro.reader(lf))
            for n, record in enumerate(fastavro.reader(ef)):
                txn = validate(_as_dict(record))
                label = _as_dict(next(labels, None))
                if str(label.get("event_id")) != txn.event_id:
                    raise FraudPipelineError(
                        f"{lpath}: label #{n} is for event {label.get('event_id')!r}, "
                        f"expected {txn.event_id!r}: the files do not belong together"
                    )
                yield SimEvent(txn, bool(label["is_fraud"]), label.get("fraud_type"))


def _as_dict(record: Any) -> dict[str, Any]:
    return dict(record) if isinstance(record, dict) else {}
