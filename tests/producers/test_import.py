"""``make import`` against the real local stack (session fixtures in tests/conftest.py): counts that
add up, event-time order, labels, the rejects file, and a re-import that publishes nothing."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import schemas
from tests.actions.action_helpers import record_count
from tests.producers.test_produce import consume

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = uuid.UUID("6f49140b-c264-5634-954f-f6a4f09c2232")  # documented in producers/history.py
PAN = "4111-1111-1111-1111"

MAPPING = """
[fields]
event_id = "txn"
user_id = "customer"
card_id = "card"
merchant_id = "shop"
amount = "price"
event_time = "at"
currency = "cur"
[constants]
country = "BE"
channel = "ECOM"
merchant_category = "5411"
[label]
is_fraud = "fraud"
fraud_type = "kind"
delay = "7d"
"""


def run_import(stack: Any, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers.importer", "--no-progress",
         "--bootstrap-servers", stack.bootstrap, "--registry-url", stack.registry_url, *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def counts(stdout: str) -> dict[str, int]:
    names = (
        "rows read",
        "published",
        "rejected",
        "duplicates refused",
        "labels published",
        "delivery errors",
    )
    out = {}
    for name in names:
        match = re.search(rf"^{name}\s+(\d+)", stdout, re.MULTILINE)
        assert match, f"no {name!r} in the summary:\n{stdout}"
        out[name] = int(match.group(1))
    return out


def test_import_orders_labels_rejects_and_refuses_a_reimport(
    stack: Any, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("payments.initiated", partitions=1)  # one partition: the global order is visible
    labels_topic = make_topic("payments.labels", partitions=1, schema=schemas.LABEL)
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING)
    # Event times out of file order; ids 1..12 good, one repeated id, three bad rows.
    good = [
        ("1", "u1", "c1", "s1", "10.50", "EUR", "2025-03-01 10:00:00", "0", ""),
        ("2", "u2", "c2", "s2", "1200", "JPY", "2025-03-01T09:00:00Z", "1", "card_testing"),
        ("3", "u1", "c1", "s3", "3", "EUR", "1740819600", "0", ""),  # 2025-03-01T09:00:00Z, epoch s
        ("4", "u3", "c3", "s1", "99.99", "USD", "1740790800000", "1", ""),  # 2025-03-01T01:00:00Z, epoch ms
        ("5", "u2", "c2", "s2", "0.01", "EUR", "2025-03-02T00:00:00+01:00", "false", "x"),
        ("6", "u4", "c4", "s4", "7", "GBP", "2025-02-28 23:59:59", "true", "stolen"),
        ("7", "u5", "c5", "s5", "8.20", "EUR", "2025-03-03 08:00:00", "0", ""),
        ("8", "u5", "c5", "s5", "8.20", "EUR", "2025-03-03 07:00:00", "0", ""),
        ("9", "u6", "c6", "s6", "15", "CHF", "2025-03-01 12:00:00", "0", ""),
        ("10", "u6", "c6", "s6", "16", "CHF", "2025-03-01 11:00:00", "1", "ato"),
        (
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "u7",
            "c7",
            "s7",
            "1",
            "EUR",
            "2025-03-01 06:00:00",
            "0",
            "",
        ),
        ("12", "u7", "c7", "s7", "2", "EUR", "2025-03-01 05:00:00", "0", ""),
    ]
    bad = [
        ("13", "u8", "c8", "s8", "ten", "EUR", "2025-03-01 05:00:00", "0", ""),  # row 13: amount
        ("14", "u8", PAN, "s8", "1", "EUR", "2025-03-01 05:00:00", "0", ""),  # row 14: card_id, a PAN
        ("15", "u8", "c8", "s8", "1", "XXX", "2025-03-01 05:00:00", "0", ""),  # row 15: currency
    ]
    repeated = [("7", "u5", "c5", "s5", "8.20", "EUR", "2025-03-03 08:00:00", "0", "")]  # row 16
    data = tmp_path / "history.csv"
    with data.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["txn", "customer", "card", "shop", "price", "cur", "at", "fraud", "kind"])
        writer.writerows(good + bad + repeated)
    common = [
        "--topic",
        topic,
        "--labels-topic",
        labels_topic,
        "--file",
        str(data),
        "--mapping",
        str(mapping),
    ]

    first = run_import(stack, *common)

    assert first.returncode == 0, first.stderr
    summary = counts(first.stdout)
    assert summary == {
        "rows read": 16,
        "published": 12,
        "rejected": 3,
        "duplicates refused": 1,
        "labels published": 12,
        "delivery errors": 0,
    }
    assert "(1 duplicates refused)" in first.stdout  # row 16's label, like its payment
    rejects = list(csv.DictReader((tmp_path / "history.csv.rejects.csv").open()))
    assert [(r["row"], r["field"]) for r in rejects] == [
        ("13", "amount"),
        ("14", "card_id"),
        ("15", "currency"),
    ]
    assert "1111-1111-1111" not in (tmp_path / "history.csv.rejects.csv").read_text()
    assert PAN not in first.stdout + first.stderr

    payments = consume(stack, topic, schemas.TRANSACTION, 12)
    ids = [str(m.value()["event_id"]) for m in payments]

    def eid(raw: str) -> str:
        return raw if "-" in raw else str(uuid.uuid5(NAMESPACE, raw))

    # Event-time order: 2025-02-28 23:59:59, 01:00, 05:00, 06:00, 09:00 (row 2 before row 3), ...
    expected_order = [
        "6",
        "4",
        "12",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "2",
        "3",
        "1",
        "10",
        "9",
        "5",
        "8",
        "7",
    ]
    assert ids == [eid(x) for x in expected_order]
    times = [m.value()["event_time"] for m in payments]
    assert times == sorted(times)
    by_id = {str(m.value()["event_id"]): m for m in payments}
    jpy = by_id[eid("2")].value()
    assert (jpy["amount_minor"], jpy["currency"], jpy["channel"]) == (1200, "JPY", "ECOM")
    assert by_id[eid("1")].value()["amount_minor"] == 1050 and by_id[eid("5")].value()["amount_minor"] == 1
    assert by_id[eid("6")].key() == "u4"
    assert re.fullmatch(rb"[0-9a-f]{32}", dict(by_id[eid("6")].headers())["correlation_id"])

    labels = consume(stack, labels_topic, schemas.LABEL, 12)
    label_of = {str(m.value()["event_id"]): m for m in labels}
    assert set(label_of) == set(ids)
    stolen = label_of[eid("6")].value()
    assert stolen["is_fraud"] is True and stolen["fraud_type"] == "stolen"
    assert (stolen["source"], stolen["card_id"], stolen["merchant_id"]) == ("import", "c4", "s4")
    assert label_of[eid("5")].value()["fraud_type"] is None  # not fraud: no type, whatever the column says
    for event_id, msg in label_of.items():
        payment = by_id[event_id]
        assert msg.value()["labelled_at"] == payment.value()["event_time"] + timedelta(days=7)
        assert msg.key() == payment.key()
        assert dict(msg.headers())["correlation_id"] == dict(payment.headers())["correlation_id"]
    labelled_at = [m.value()["labelled_at"] for m in labels]
    assert labelled_at == sorted(labelled_at)

    again = run_import(stack, *common)

    assert again.returncode == 0, again.stderr
    assert counts(again.stdout) == {
        "rows read": 16,
        "published": 0,
        "rejected": 3,
        "duplicates refused": 13,
        "labels published": 0,
        "delivery errors": 0,
    }
    assert "(13 duplicates refused)" in again.stdout  # the labels: every labelled row, row 16 too
    assert len(consume(stack, topic, schemas.TRANSACTION, 12)) == 12  # consume checks nothing beyond
    assert len(consume(stack, labels_topic, schemas.LABEL, 12)) == 12


def test_synccfd_history_imports_whole(stack: Any, make_topic: Callable[..., str], tmp_path: Path) -> None:
    """A history from a generator we did not write, through the shipped mapping."""
    topic = make_topic("payments.initiated")
    labels_topic = make_topic("payments.labels", schema=schemas.LABEL)
    data = tmp_path / "synccfd.parquet"
    generated = subprocess.run(
        [sys.executable, "examples/synccfd_generate.py", "--customers", "60", "--terminals", "120",
         "--days", "5", "--seed", "3", "--out", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    table = pq.read_table(data)
    frauds = sum(table.column("TX_FRAUD").to_pylist())
    assert table.num_rows > 100 and frauds > 0

    result = run_import(
        stack, "--topic", topic, "--labels-topic", labels_topic, "--file", str(data),
        "--mapping", "examples/synccfd.toml",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = counts(result.stdout)
    assert summary["published"] == summary["labels published"] == table.num_rows
    assert summary["rejected"] == summary["duplicates refused"] == 0
    labels = consume(stack, labels_topic, schemas.LABEL, table.num_rows)
    assert sum(m.value()["is_fraud"] for m in labels) == frauds
    assert {m.value()["fraud_type"] for m in labels if m.value()["is_fraud"]} <= {
        "high_amount", "compromised_terminal", "stolen_card_number", "stolen_physical_card",
    }  # fmt: skip
    assert record_count(stack, topic) == table.num_rows


def test_ctrl_c_flushes_and_the_counts_still_add_up(
    stack: Any, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("payments.initiated")
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING.split("[label]")[0])
    data = tmp_path / "big.csv"
    with data.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["txn", "customer", "card", "shop", "price", "cur", "at", "fraud", "kind"])
        start = 1_740_787_200  # 2025-03-01T00:00:00Z
        writer.writerows(
            (i, f"u{i % 997}", f"c{i % 997}", "s", "1", "EUR", start + i, 0, "") for i in range(600_000)
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers.importer", "--no-progress", "--bootstrap-servers", stack.bootstrap,
         "--registry-url", stack.registry_url, "--topic", topic, "--file", str(data), "--mapping", str(mapping),
         "--linger-ms", "200"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240  # reading and converting the file, then some sending
    while record_count(stack, topic) == 0:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the importer sent nothing in 240 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    summary = counts(out)
    not_sent = int(re.search(r"^not sent\s+(\d+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert "interrupted" in out and summary["delivery errors"] == 0
    assert 0 < summary["published"] < 600_000
    assert summary["published"] + summary["rejected"] + summary["duplicates refused"] + not_sent == 600_000
    assert record_count(stack, topic) == summary["published"]
