"""``python -m producers.importer`` (``make import``): a labelled history from a CSV or Parquet file,
through a mapping file, into ``payments.initiated`` and ``payments.labels``.

Every row ends in exactly one of three counts: published, rejected (written with its row number,
field and reason to the rejects file) or refused as a duplicate (its event id is already on the
topic, or earlier in the file). Payments and labels go out merged in time order (a payment at its
event time, its label at its ``labelled_at``), through the producer's publisher (idempotent,
back-pressure on a full queue, Confluent-framed Avro validated against the registered schema).

The Kafka timestamp of an imported record is the time it is sent, not its event time: topics are
retained by record timestamp, and a history months old would be deleted as soon as it is written.

Exit codes: 0 done, 1 failure (undelivered records, Kafka or registry down), 2 invalid setting,
mapping or file, 130 interrupted (after flushing what was sent and printing the summary).
"""

from __future__ import annotations

import csv
import heapq
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import Field
from pydantic_settings import CliToggleFlag
from tqdm import tqdm

from fraud_core.cli import ENV_NOTE, cli_config, fail, parse_settings
from fraud_core.exceptions import FraudPipelineError
from fraud_core.kafka.headers import new_headers
from fraud_core.kafka.readers import read_range, watermarks
from fraud_core.kafka_io import consumer
from fraud_core.settings import ConnectionSettings
from fraud_core.topics import INITIATED, LABELS
from fraud_core.transaction import wall_clock_ms
from producers.history import HistoryMapping, MappingError, Reject, Row, convert, load_mapping, read_table
from producers.publish import FLUSH_TIMEOUT_S, ProduceSummary, _Publisher
from producers.settings import ProducerSettings

__all__ = ["ImportCli", "ImportSummary", "existing_event_ids", "first_string", "import_history", "main"]

log = logging.getLogger("producers.importer")

_HEADER = 5  # Confluent framing: magic byte and 4-byte schema id


class ImportCli(ConnectionSettings):
    __doc__ = (
        "Import a labelled history (CSV or Parquet) through a mapping file (TOML; see docs/INTERFACES.md, "
        "'Bring your own history', and examples/synccfd.toml) into the payments and labels topics. "
        "Rejected rows go to <file>.rejects.csv; rows already on the topic are refused as duplicates. "
        f"Example: --file history.parquet --mapping examples/synccfd.toml. {ENV_NOTE}"
    )

    model_config = cli_config(
        "python -m producers.importer",
        {
            "KAFKA_BOOTSTRAP_SERVERS": "bootstrap-servers",
            "SCHEMA_REGISTRY_URL": "registry-url",
            "IMPORT_TOPIC": "topic",
            "IMPORT_LABELS_TOPIC": "labels-topic",
            "IMPORT_LINGER_MS": "linger-ms",
            "LOG_LEVEL": "log-level",
        },
    )

    IMPORT_TOPIC: str = Field(INITIATED, min_length=1, description="Topic of the payments.")
    IMPORT_LABELS_TOPIC: str = Field(LABELS, min_length=1, description="Topic of the labels.")
    IMPORT_LINGER_MS: int = Field(20, ge=0, le=10_000, description="librdkafka linger.ms (batching delay).")
    file: Path = Field(description="The history: a .csv (header row) or .parquet file.")
    mapping: Path = Field(description="The mapping file (TOML): [fields], [constants], optional [label].")
    rejects: Path | None = Field(None, description="Where rejected rows go; default <file>.rejects.csv.")
    no_progress: CliToggleFlag[bool] = Field(False, description="No progress bar.")


@dataclass
class ImportSummary:
    """What an import did. ``rows_read == published + rejected + duplicates`` once it has finished,
    and, when interrupted, ``not_sent`` holds the rows it did not reach."""

    rows_read: int = 0
    published: int = 0
    rejected: int = 0
    duplicates: int = 0
    not_sent: int = 0
    labels_published: int = 0
    label_duplicates: int = 0
    delivered: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    publish_s: float = 0.0
    interrupted: bool = False
    rejects_file: Path | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> str:
        """The multi-line summary the CLI prints."""
        publish_rate = (self.published + self.labels_published) / self.publish_s if self.publish_s else 0.0
        lines = [
            f"rows read           {self.rows_read:>10}   ({self.rows_per_s:,.0f} rows/s over {self.elapsed_s:.1f} s)",
            f"published           {self.published:>10}   ({publish_rate:,.0f} records/s while publishing)",
            f"rejected            {self.rejected:>10}"
            + (f"   (see {self.rejects_file})" if self.rejected and self.rejects_file else ""),
            f"duplicates refused  {self.duplicates:>10}",
        ]
        if self.not_sent:
            lines.append(f"not sent            {self.not_sent:>10}   (interrupted before them)")
        lines += [
            f"labels published    {self.labels_published:>10}"
            + (f"   ({self.label_duplicates} duplicates refused)" if self.label_duplicates else ""),
            f"delivered           {self.delivered:>10}",
            f"delivery errors     {self.errors:>10}",
        ]
        if self.interrupted:
            lines.append("interrupted: stopped early on Ctrl-C, after a flush")
        return "\n".join(lines)


def first_string(value: bytes | None) -> str | None:
    """The first field of a Confluent-framed Avro record when it is a string (``event_id`` in the
    payment and label schemas), read without the schema: a zigzag varint length, then UTF-8. None
    when the value is not framed or too short."""
    if not value or len(value) <= _HEADER or value[0] != 0:
        return None
    n = shift = 0
    i = _HEADER
    while i < len(value):
        byte = value[i]
        n |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            length = (n >> 1) ^ -(n & 1)
            if length < 0 or i + length > len(value):
                return None
            return value[i : i + length].decode("utf-8", "replace")
        shift += 7
    return None


def existing_event_ids(settings: ConnectionSettings, topics: Iterable[str]) -> dict[str, set[str]]:
    """Topic -> the event ids already on it (every partition, from its start to its end now)."""
    topics = list(dict.fromkeys(topics))
    bounds = watermarks(consumer(settings.kafka), topics)
    out: dict[str, set[str]] = {t: set() for t in topics}

    def decode(value: bytes | None) -> dict[str, Any] | None:
        event_id = first_string(value)
        return None if event_id is None else {"event_id": event_id}

    records = sum(end - start for start, end in bounds.values())
    # Two minutes, plus a second per 20,000 records: a topic of millions takes minutes to read.
    timeout_s = 120.0 + records / 20_000
    for topic, _partition, _offset, record in read_range(
        consumer(settings.kafka), decode, bounds, timeout_s=timeout_s
    ):
        if record is not None:
            out[topic].add(record["event_id"])
    return out


def write_rejects(path: Path, rejects: Iterable[Reject]) -> None:
    """The rejects file: one line per refused row (row 1 is the first data row), card numbers masked."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "field", "reason"])
        writer.writerows((r.number, r.field, r.reason) for r in rejects)


def _producer_settings(settings: ImportCli) -> ProducerSettings:
    """The producer's settings for the import's connection, so both publish through one code path."""
    connection = settings.model_dump(include=set(ConnectionSettings.model_fields))
    return ProducerSettings(
        **connection,
        PRODUCER_TOPIC=settings.IMPORT_TOPIC,
        PRODUCER_LABELS_TOPIC=settings.IMPORT_LABELS_TOPIC,
        PRODUCER_LINGER_MS=settings.IMPORT_LINGER_MS,
        PRODUCER_COUNT=None,
        PRODUCER_DURATION_S=None,
    )


def _in_time_order(payments: list[Row], labels: list[Row]) -> Iterator[tuple[Row, bool]]:
    """(row, is_label) pairs: ``payments`` (sorted by event time) merged with the labels of
    ``labels`` at their ``labelled_at``; ties keep file order, a payment before its own label."""
    by_time = sorted(
        ((r.label["labelled_at"], r.number, 1, r) for r in labels if r.label is not None),
        key=lambda t: (t[0], t[1]),
    )
    merged = heapq.merge(
        ((r.txn.event_time, r.number, 0, r) for r in payments), by_time, key=lambda t: (t[0], t[1], t[2])
    )
    for _time, _number, kind, row in merged:
        yield row, kind == 1


def import_history(
    settings: ImportCli,
    mapping: HistoryMapping,
    *,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> ImportSummary:
    """Read ``settings.file``, convert it through ``mapping``, refuse duplicates and publish the rest.

    Raises:
        MappingError: the file is missing or a mapped column is not in it.
        RegistryError, ConfigError: the registry, Kafka, a topic or a subject is unavailable.
    """
    stop = stop or threading.Event()
    started = time.monotonic()
    summary = ImportSummary(
        rejects_file=settings.rejects or settings.file.with_name(settings.file.name + ".rejects.csv")
    )
    table = read_table(settings.file, mapping)
    now_ms = wall_clock_ms()
    rows, rejects = _rows_and_rejects(convert(table, mapping, now_ms))
    summary.rows_read = table.num_rows
    summary.rejected = len(rejects)
    assert summary.rejects_file is not None
    write_rejects(summary.rejects_file, rejects)
    if rejects:
        log.warning("%d rows rejected; see %s", len(rejects), summary.rejects_file)
    rows.sort(key=lambda r: (r.txn.event_time, r.number))
    labels_topic = settings.IMPORT_LABELS_TOPIC if mapping.label else None
    produced = ProduceSummary()
    # Every payment is a Transaction from the job's validation and every label a record built field
    # by field (tests/producers/test_import_units.py checks both against the schemas): the Avro
    # writer's own check would be two thirds of the cost of publishing them.
    publisher = _Publisher(
        _producer_settings(settings), settings.IMPORT_TOPIC, labels_topic, produced, validate=False
    )
    topics = [settings.IMPORT_TOPIC] + ([labels_topic] if labels_topic else [])
    log.info("reading the event ids already on %s", ", ".join(topics))
    seen = existing_event_ids(settings, topics)
    seen_payments = seen[settings.IMPORT_TOPIC]
    seen_labels = seen[labels_topic] if labels_topic else set()
    fresh = _not_yet_published(rows, seen_payments, summary)
    # A row refused as a duplicate payment may still lack its label (an import stopped halfway).
    labelled = [r for r in rows if r.label is not None]
    bar = tqdm(
        total=len(fresh),
        unit="row",
        disable=not progress,
        mininterval=0.5,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    publish_started = time.monotonic()
    try:
        _publish_in_time_order(fresh, labelled, seen_labels, publisher, summary, bar, stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        bar.close()
        if stop.is_set():
            summary.interrupted = True
            log.warning("interrupted: flushing what was sent")
        publisher.flush(FLUSH_TIMEOUT_S)
        summary.delivered, summary.errors = produced.delivered, produced.errors
        summary.not_sent = len(fresh) - summary.published
        summary.publish_s = time.monotonic() - publish_started
        summary.elapsed_s = time.monotonic() - started
    return summary


def _rows_and_rejects(items: Iterable[Row | Reject]) -> tuple[list[Row], list[Reject]]:
    """The converted rows apart from the rejected ones, which go to the rejects file rather than Kafka."""
    rows: list[Row] = []
    rejects: list[Reject] = []
    for item in items:
        if isinstance(item, Row):
            rows.append(item)
        else:
            rejects.append(item)
    return rows, rejects


def _not_yet_published(rows: list[Row], seen_payments: set[str], summary: ImportSummary) -> list[Row]:
    """The rows whose payment is not on the topic yet, counting the others as duplicates, so importing a
    file twice (or resuming a stopped import) publishes each payment once."""
    fresh: list[Row] = []
    for row in rows:
        if row.txn.event_id in seen_payments:
            summary.duplicates += 1
        else:
            seen_payments.add(row.txn.event_id)  # a second row with the same id is a duplicate too
            fresh.append(row)
    return fresh


def _publish_in_time_order(
    fresh: list[Row],
    labelled: list[Row],
    seen_labels: set[str],
    publisher: _Publisher,
    summary: ImportSummary,
    bar: tqdm[Any],
    stop: threading.Event,
) -> None:
    """Publish the new payments and the missing labels merged in time order until done or ``stop`` is
    set; a label carries its payment's headers (its correlation id) when the payment was sent in this run."""
    headers_of: dict[int, list[tuple[str, bytes]]] = {}
    for row, is_label in _in_time_order(fresh, labelled):
        if stop.is_set():
            break
        if is_label:
            assert row.label is not None
            if row.label["event_id"] in seen_labels:
                summary.label_duplicates += 1
                continue
            seen_labels.add(row.label["event_id"])
            headers = headers_of.pop(row.number, None) or new_headers()
            publisher.send_label_record(row.txn.user_id, row.label, headers)
            summary.labels_published += 1
        else:
            headers = new_headers()
            if row.label is not None:
                headers_of[row.number] = headers  # its label carries the payment's correlation id
            publisher.send_transaction(row.txn, headers)
            summary.published += 1
            bar.update(1)


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(ImportCli, argv)
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one line per registry request otherwise
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        mapping = load_mapping(settings.mapping)
    except MappingError as exc:
        fail(str(exc))
    if not settings.file.is_file():
        fail(f"--file {settings.file} does not exist")
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.warning("stopping after a flush (signal %d); repeat it to stop at once", signum)
        signal.signal(signum, signal.SIG_DFL)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        summary = import_history(settings, mapping, progress=not settings.no_progress, stop=stop)
    except MappingError as exc:
        fail(str(exc))
    except FraudPipelineError as exc:
        log.error("%s", exc)
        return 1
    print(summary.render())  # noqa: T201 - CLI output
    if summary.interrupted:
        return 130
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
