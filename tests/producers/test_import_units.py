"""``make import`` without Kafka: the mapping file, the conversions, the rejects, the duplicate reader.

Expected values are written out by hand (dates checked with ``date -u -d @...``), never computed
with the importer's own code.
"""

from __future__ import annotations

import csv
import io
import struct
import tomllib
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from fraud_core.avro import describe_misfit
from fraud_core.exceptions import ValidationError
from fraud_core.transaction import Transaction
from producers.history import (
    IMPORT_NAMESPACE,
    MappingError,
    Reject,
    Row,
    convert,
    derive_event_id,
    parse_delay,
    parse_mapping,
    parse_time_ms,
    read_table,
    to_minor,
)
from producers.importer import _in_time_order, first_string, main, write_rejects

ROOT = Path(__file__).resolve().parents[2]
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the processing time of these conversions
JAN31_NOON_MS = 1_738_324_800_000  # 2025-01-31T12:00:00Z
PAN = "4111 1111 1111 1111"

MAPPING = """
[fields]
event_id = "id"
user_id = "customer"
card_id = "card"
merchant_id = "terminal"
amount = "amount"
event_time = "when"
[constants]
currency = "EUR"
country = "BE"
channel = "POS"
merchant_category = "5999"
[label]
is_fraud = "fraud"
fraud_type = "scenario"
delay = "7d"
"""


def mapping_with(**changes: Any) -> dict[str, Any]:
    """The MAPPING above as a dict, with sections replaced (a None value deletes the key)."""
    raw = tomllib.loads(MAPPING)
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        target = raw.setdefault(section, {}) if key else raw
        name = key or section
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return raw


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"fields__amount": None}, "[fields] amount is missing"),
        ({"fields__colour": "c"}, "[fields] colour: unknown key"),
        ({"constants__currency": None}, "currency is missing"),
        ({"fields__currency": "cur"}, "currency is both in [fields] and in [constants]"),
        ({"constants__currency": "XYZ"}, "[constants] currency"),
        ({"constants__channel": "SHOP"}, "[constants] channel"),
        ({"label__delay": "a week"}, "[label] delay = 'a week'"),
        ({"label__labelled_at": "known"}, "exactly one of delay"),
        ({"label__is_fraud": None}, "[label] is_fraud is missing"),
        ({"fields__user_id": 7}, "[fields] user_id = 7"),
        ({"sources": {"a": "b"}}, "sources: unknown section"),
        ({"values": {"amount": {"1": "2"}}}, "[values.amount]"),
    ],
)
def test_a_bad_mapping_names_its_key(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(MappingError) as info:
        parse_mapping(mapping_with(**changes), "m.toml")
    assert named in str(info.value) and str(info.value).startswith("m.toml: ")


def test_the_shipped_synccfd_mapping_parses() -> None:
    mapping = parse_mapping(tomllib.loads((ROOT / "examples/synccfd.toml").read_text()))
    assert mapping.columns["merchant_id"] == "TERMINAL_ID" and mapping.constants["currency"] == "BRL"
    assert mapping.label is not None and mapping.label.delay_ms == 7 * 86_400_000
    assert mapping.values["channel"] == {"CP": "POS", "CNP": "ECOM"}


@pytest.mark.parametrize(
    ("text", "ms"), [("7d", 604_800_000), ("12h", 43_200_000), ("30m", 1_800_000), ("1.5s", 1500), ("0s", 0)]
)
def test_delays(text: str, ms: int) -> None:
    assert parse_delay(text) == ms


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-31T12:00:00Z",
        "2025-01-31 12:00:00",  # a space for the T, no offset: UTC
        "2025-01-31T13:00:00+01:00",
        "2025-01-31 12:00:00.000",
        1_738_324_800,  # epoch seconds
        "1738324800",
        1_738_324_800_000,  # epoch milliseconds
        "1738324800000",
        1_738_324_800.0,
    ],
)
def test_timestamp_forms(value: object) -> None:
    assert parse_time_ms(value) == JAN31_NOON_MS


def test_fractional_epoch_seconds_keep_their_milliseconds() -> None:
    assert parse_time_ms("1738324800.25") == JAN31_NOON_MS + 250


@pytest.mark.parametrize("value", ["31/01/2025", "", None, "yesterday", float("nan"), True])
def test_a_bad_timestamp_names_the_field_and_value(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_time_ms(value)
    assert info.value.field == "event_time"


def test_parquet_timestamps_of_every_unit_and_zone(tmp_path: Path) -> None:
    noon = pa.array([JAN31_NOON_MS], pa.int64())
    table = pa.table(
        {
            "id": ["a"],
            "customer": ["c1"],
            "card": ["k1"],
            "terminal": ["t1"],
            "amount": [1.5],
            "when": noon.cast(pa.timestamp("ms")).cast(pa.timestamp("ns")),
            "fraud": [0],
            "scenario": [0],
        }
    )
    mapping = parse_mapping(tomllib.loads(MAPPING))
    for kind in (pa.timestamp("s"), pa.timestamp("us"), pa.timestamp("ns", tz="Europe/Brussels")):
        path = tmp_path / f"{kind.unit}.parquet"
        pq.write_table(table.set_column(5, "when", table.column("when").cast(kind)), path)
        (row,) = convert(read_table(path, mapping), mapping, NOW_MS)
        assert isinstance(row, Row) and row.txn.event_time == JAN31_NOON_MS


def test_event_ids_are_stable_uuid5_and_uuids_are_kept() -> None:
    assert str(IMPORT_NAMESPACE) == "6f49140b-c264-5634-954f-f6a4f09c2232"
    assert derive_event_id("42") == "73ea2113-c2c6-514d-9592-10ff2eda617d" == derive_event_id("42")
    assert derive_event_id("43") != derive_event_id("42")
    other = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
    for raw in ("0", "TX-1", "é" * 40, "x" * 300):  # against the standard library's uuid5
        assert derive_event_id(raw) == str(uuid.uuid5(IMPORT_NAMESPACE, raw))
        assert derive_event_id(raw, other) == str(uuid.uuid5(other, raw))
    kept = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert derive_event_id(kept) == kept
    assert derive_event_id("{" + kept + "}") != kept  # only the canonical form is a UUID to the job


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("1234", "JPY", 1234),
        (1234, "JPY", 1234),
        ("12.34", "EUR", 1234),
        (57.16, "EUR", 5716),
        (128.35000000000002, "EUR", 12835),  # float noise of the generator rounds away
        ("0.1", "EUR", 10),
        (3, "EUR", 300),
    ],
)
def test_amounts_use_the_currency_exponent(amount: object, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"), [("12.5", "JPY"), ("12.345", "EUR"), ("abc", "EUR"), ("", "EUR")]
)
def test_a_bad_amount_is_refused(amount: object, currency: str) -> None:
    with pytest.raises(ValidationError) as info:
        to_minor(amount, currency)
    assert info.value.field == "amount"


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as out:
        csv.writer(out).writerows(
            [["id", "customer", "card", "terminal", "amount", "when", "fraud", "scenario"], *rows]
        )
    return path


def test_bad_rows_are_rejected_with_their_number_and_field(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "h.csv",
        [
            ["1", "u1", "k1", "m1", "10.00", "2025-01-31 12:00:00", "0", "0"],
            ["2", "", "k1", "m1", "10.00", "2025-01-31 12:00:00", "0", "0"],
            ["3", "u1", PAN, "m1", "10.00", "2025-01-31 12:00:00", "0", "0"],
            ["4", "u1", "k1", "m1", "-5", "2025-01-31 12:00:00", "0", "0"],
            ["5", "u1", "k1", "m1", "10.00", "31/01/2025", "0", "0"],
            ["6", "u1", "k1", "m1", "10.00", "1999-12-31 23:59:59", "0", "0"],
            ["7", "u1", "k1", "m1", "10.00", "2025-01-31 12:00:00", "maybe", "0"],
            ["8", "u1", "k1", "m1", "10.00", "2025-01-31 12:00:00", "1", "2"],
        ],
    )
    mapping = parse_mapping(tomllib.loads(MAPPING))
    out = list(convert(read_table(path, mapping), mapping, NOW_MS))

    rejects = [(r.number, r.field) for r in out if isinstance(r, Reject)]
    assert rejects == [
        (2, "user_id"),
        (3, "card_id"),
        (4, "amount_minor"),
        (5, "event_time"),
        (6, "event_time"),
        (7, "is_fraud"),
    ]
    good = [r for r in out if isinstance(r, Row)]
    assert [r.number for r in good] == [1, 8]
    assert good[1].txn == Transaction(
        derive_event_id("8"), "u1", "k1", 1000, "EUR", "m1", "5999", "BE", "POS", JAN31_NOON_MS
    )
    assert good[1].label == {
        "event_id": derive_event_id("8"),
        "is_fraud": True,
        "fraud_type": "2",
        "labelled_at": JAN31_NOON_MS + 7 * 86_400_000,
        "source": "import",
        "card_id": "k1",
        "merchant_id": "m1",
    }
    assert good[0].label is not None and good[0].label["fraud_type"] is None
    for row in good:  # the importer publishes these without the Avro writer's own check
        assert describe_misfit(row.txn.to_record(), schemas.load(schemas.TRANSACTION)) is None
        assert row.label is not None and describe_misfit(row.label, schemas.load(schemas.LABEL)) is None

    rejects_file = tmp_path / "h.csv.rejects.csv"
    write_rejects(rejects_file, [r for r in out if isinstance(r, Reject)])
    text = rejects_file.read_text()
    assert PAN not in text and "1111111111111111" not in text and "1111" in text
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [(line["row"], line["field"]) for line in lines] == [(str(n), f) for n, f in rejects]
    assert "card number" in lines[1]["reason"]


def test_labelled_at_from_a_column_must_not_precede_the_payment(tmp_path: Path) -> None:
    raw = mapping_with(label__delay=None, label__labelled_at="known")
    path = tmp_path / "h.csv"
    with path.open("w", newline="") as out:
        csv.writer(out).writerows(
            [
                ["id", "customer", "card", "terminal", "amount", "when", "fraud", "scenario", "known"],
                ["1", "u", "k", "m", "1", "2025-01-31 12:00:00", "true", "x", "2025-02-03T00:00:00Z"],
                ["2", "u", "k", "m", "1", "2025-01-31 12:00:00", "false", "", "2025-01-30T00:00:00Z"],
            ]
        )
    mapping = parse_mapping(raw)
    first, second = convert(read_table(path, mapping), mapping, NOW_MS)
    assert isinstance(first, Row) and first.label is not None
    assert first.label["labelled_at"] == 1_738_540_800_000  # 2025-02-03T00:00:00Z
    assert isinstance(second, Reject) and (second.number, second.field) == (2, "labelled_at")


def test_a_missing_column_names_the_mapping_key(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("id,customer,card,terminal,price,when,fraud,scenario\n")
    with pytest.raises(MappingError, match=r"\[fields\] amount = 'amount': no such column"):
        read_table(path, parse_mapping(tomllib.loads(MAPPING)))


def test_cli_refuses_a_bad_mapping_or_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MAPPING.replace('amount = "amount"\n', ""))
    data = write_csv(tmp_path / "h.csv", [])
    with pytest.raises(SystemExit) as info:
        main(["--file", str(data), "--mapping", str(bad)])
    assert info.value.code == 2 and "[fields] amount is missing" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text(MAPPING)
    with pytest.raises(SystemExit) as info:
        main(["--file", str(tmp_path / "nope.csv"), "--mapping", str(good)])
    assert info.value.code == 2 and "nope.csv does not exist" in capsys.readouterr().err


def test_cli_refuses_a_file_without_a_mapped_column_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is read before Kafka or the registry is reached: exit 2 naming the mapping key."""
    data = tmp_path / "h.csv"
    data.write_text("id,customer,card,terminal,price,when,fraud,scenario\n1,u,c,t,1,2025-03-01,0,\n")
    good = tmp_path / "good.toml"
    good.write_text(MAPPING)
    monkeypatch.setattr("signal.signal", lambda *args: None)  # main's Ctrl-C handler stays out of pytest
    with pytest.raises(SystemExit) as info:
        main(["--file", str(data), "--mapping", str(good), "--bootstrap-servers", "127.0.0.1:9"])
    assert info.value.code == 2
    assert "[fields] amount = 'amount': no such column" in capsys.readouterr().err


def framed(schema_name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, 7))
    fastavro.schemaless_writer(buf, schemas.load(schema_name), record)
    return buf.getvalue()


@pytest.mark.parametrize("event_id", ["0f8fad5b-d9cb-469f-a165-70867728950e", "x" * 200, "é"])
def test_first_string_reads_the_event_id_of_framed_records(event_id: str) -> None:
    label = {"event_id": event_id, "is_fraud": True, "fraud_type": None, "labelled_at": 1}
    assert first_string(framed(schemas.LABEL, label)) == event_id
    assert first_string(b"\x01" + framed(schemas.LABEL, label)[1:]) is None  # not Confluent framing
    assert first_string(framed(schemas.LABEL, label)[:6]) is None  # cut short


def test_payments_and_labels_merge_in_time_order() -> None:
    def row(number: int, at: int, label_at: int) -> Row:
        txn = Transaction(derive_event_id(str(number)), "u", "k", 1, "EUR", "m", "5999", "BE", "POS", at)
        return Row(number, txn, {"event_id": txn.event_id, "labelled_at": label_at})

    a, b, c = row(1, 100, 400), row(2, 200, 200), row(3, 300, 350)
    order = [(r.number, is_label) for r, is_label in _in_time_order([a, b, c], [c, a, b])]
    assert order == [(1, False), (2, False), (2, True), (3, False), (3, True), (1, True)]
    only_labels = [(r.number, is_label) for r, is_label in _in_time_order([], [a, c])]
    assert only_labels == [(3, True), (1, True)]
