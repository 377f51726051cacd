"""A labelled history file -> validated payments and labels: the mapping file and the row conversion
behind ``make import`` (:mod:`producers.importer` publishes what this module produces).

Pure functions over a ``pyarrow.Table``: no Kafka, no clock but the ``now_ms`` the caller passes to
the job's own validation (:func:`fraud_core.transaction.validate`), so a row this module accepts is
one the stream job accepts too, and a row it refuses is reported with its number, field and reason.

The mapping is TOML (docs/INTERFACES.md, "Bring your own history")::

    [fields]      our field = the file's column
    [constants]   our field = a value, for fields the file lacks
    [label]       is_fraud = column, fraud_type = column (optional), delay = "7d" or labelled_at = column
    [values.F]    optional: file value -> our value for field F (channel "CP" = "POS", fraud_type "1" = ...)
    event_id_namespace = "..."   optional: separates the derived event ids of two datasets
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fraud_core.cards import mask_pans
from fraud_core.exceptions import ConfigError, ValidationError
from fraud_core.reference import CURRENCIES
from fraud_core.transaction import UUID_PATTERN, Transaction, validate

# The namespace of every event id derived from a non-UUID id: uuid5(IMPORT_NAMESPACE, value), or,
# with ``event_id_namespace = "NAME"`` in the mapping, uuid5(uuid5(IMPORT_NAMESPACE, NAME), value).
# It is uuid5(NAMESPACE_URL, "urn:fraud-pipeline:import"); changing it re-keys every imported event.
IMPORT_NAMESPACE = uuid.UUID("6f49140b-c264-5634-954f-f6a4f09c2232")

REQUIRED_COLUMNS = ("event_id", "user_id", "card_id", "merchant_id", "amount", "event_time")
COLUMN_OR_CONSTANT = ("currency", "country", "channel", "merchant_category")
OPTIONAL = ("device_id",)
FIELD_KEYS = REQUIRED_COLUMNS + COLUMN_OR_CONSTANT + OPTIONAL
LABEL_KEYS = ("is_fraud", "fraud_type", "delay", "labelled_at")
TOP_KEYS = ("fields", "constants", "label", "values", "event_id_namespace")

# Epoch numbers below this are seconds, above it milliseconds: 1e11 s is the year 5138, 1e11 ms is
# 1973 (before the 2000-01-01 floor of the job's validation, so a misread is refused, never kept).
EPOCH_MS_THRESHOLD = 1e11
_UUID = re.compile(UUID_PATTERN)
_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]*)?$")
_DELAY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_TRUE = {"1", "true", "t", "yes", "y", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "0.0"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_DELTA = timedelta(milliseconds=1)
_NOISE = Decimal("1e-6")
_RELATIVE_NOISE = Decimal("1e-9")


class MappingError(ConfigError):
    """The mapping file is invalid; the message names the file, the key and what to write instead."""


@dataclass(frozen=True)
class LabelMapping:
    is_fraud: str
    fraud_type: str | None = None
    delay_ms: int | None = None
    labelled_at: str | None = None


@dataclass(frozen=True)
class HistoryMapping:
    """A parsed mapping: which column (or constant) gives each payment field, and the labels."""

    columns: dict[str, str]
    constants: dict[str, str]
    label: LabelMapping | None = None
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    namespace: uuid.UUID = IMPORT_NAMESPACE

    def file_columns(self) -> list[str]:
        """Every column of the file the mapping reads, once each, in mapping order."""
        names = list(self.columns.values())
        if self.label:
            names += [c for c in (self.label.is_fraud, self.label.fraud_type, self.label.labelled_at) if c]
        return list(dict.fromkeys(names))

    def where(self, column: str) -> str:
        """The mapping key that names ``column`` (for error messages)."""
        for key, col in self.columns.items():
            if col == column:
                return f"[fields] {key}"
        return f"[label] for column {column!r}"


def parse_delay(text: object, where: str = "[label] delay") -> int:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"500ms"``, ``"2w"`` -> milliseconds.

    Raises:
        MappingError: naming ``where`` and the value.
    """
    match = _DELAY.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise MappingError(
            f'{where} = {text!r}: not a delay; write a number and a unit (ms, s, m, h, d, w), e.g. "7d"'
        )
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


def _strings(section: object, name: str, allowed: tuple[str, ...] | None) -> dict[str, str]:
    if not isinstance(section, dict):
        raise MappingError(f'[{name}] must be a table of key = "value" lines')
    out: dict[str, str] = {}
    for key, value in section.items():
        if allowed is not None and key not in allowed:
            raise MappingError(f"[{name}] {key}: unknown key; expected one of {', '.join(allowed)}")
        if not isinstance(value, str) or not value:
            raise MappingError(f"[{name}] {key} = {value!r}: must be a non-empty string")
        out[key] = value
    return out


def parse_mapping(raw: Mapping[str, Any], source: str = "mapping") -> HistoryMapping:
    """A mapping from its parsed TOML.

    Raises:
        MappingError: naming the first bad key (with ``source``, the file) and what is expected.
    """
    try:
        return _parse_mapping(raw)
    except MappingError as exc:
        raise MappingError(f"{source}: {exc}") from None


def _parse_mapping(raw: Mapping[str, Any]) -> HistoryMapping:
    for key in raw:
        if key not in TOP_KEYS:
            raise MappingError(f"{key}: unknown section or key; expected {', '.join(TOP_KEYS)}")
    if "fields" not in raw:
        raise MappingError("[fields] is missing: it maps our fields to the file's columns")
    columns = _strings(raw["fields"], "fields", FIELD_KEYS)
    constants = _strings(raw.get("constants", {}), "constants", COLUMN_OR_CONSTANT + OPTIONAL)
    for key in REQUIRED_COLUMNS:
        if key not in columns:
            raise MappingError(f"[fields] {key} is missing: name the file's column that holds it")
    for key in COLUMN_OR_CONSTANT:
        if key in columns and key in constants:
            raise MappingError(f"{key} is both in [fields] and in [constants]; keep one")
        if key not in columns and key not in constants:
            raise MappingError(f"{key} is missing: give it as a column in [fields] or a value in [constants]")
    label = _label_mapping(raw["label"]) if "label" in raw else None
    values = _value_tables(raw.get("values", {}))
    namespace = (
        _event_id_namespace(raw["event_id_namespace"]) if "event_id_namespace" in raw else IMPORT_NAMESPACE
    )
    mapping = HistoryMapping(columns, constants, label, values, namespace)
    _check_constants(mapping)
    return mapping


def _label_mapping(raw: Any) -> LabelMapping:
    """The [label] section: the fraud column and exactly one way to date the label (a fixed delay or a
    column), so every label knows when it became known."""
    spec = _strings(raw, "label", LABEL_KEYS)
    if "is_fraud" not in spec:
        raise MappingError("[label] is_fraud is missing: name the column of 0/1 or true/false")
    if ("delay" in spec) == ("labelled_at" in spec):
        raise MappingError('[label] needs exactly one of delay ("7d") or labelled_at (a column)')
    delay = parse_delay(spec["delay"]) if "delay" in spec else None
    return LabelMapping(spec["is_fraud"], spec.get("fraud_type"), delay, spec.get("labelled_at"))


def _value_tables(raw_values: Any) -> dict[str, dict[str, str]]:
    """The [values.<field>] tables translating the file's codes to ours, for text fields only: a number or
    a time has no codes to translate."""
    if not isinstance(raw_values, dict):
        raise MappingError("[values] must hold tables such as [values.channel]")
    values: dict[str, dict[str, str]] = {}
    for key, table in raw_values.items():
        if key not in (*FIELD_KEYS, "fraud_type") or key in ("amount", "event_time", "event_id"):
            raise MappingError(f"[values.{key}]: values can be translated only for text fields")
        values[key] = _strings(table, f"values.{key}", None)
    return values


def _event_id_namespace(name: Any) -> uuid.UUID:
    """The UUID namespace of the imported events' ids, derived from a name so that imports under
    different names get different event ids."""
    if not isinstance(name, str) or not name:
        raise MappingError(f"event_id_namespace = {name!r}: must be a non-empty string")
    return uuid.uuid5(IMPORT_NAMESPACE, name)


def _check_constants(mapping: HistoryMapping) -> None:
    """Run the job's validation on a probe record made of the constants, so a wrong constant fails
    the mapping (naming its key) instead of rejecting every row."""
    probe: dict[str, Any] = {
        "event_id": str(IMPORT_NAMESPACE),
        "user_id": "probe",
        "card_id": "probe",
        "amount_minor": 0,
        "currency": "EUR",
        "merchant_id": "probe",
        "merchant_category": "5999",
        "country": "BE",
        "channel": "POS",
        "event_time": 1_700_000_000_000,
    }
    probe.update(mapping.constants)
    try:
        validate(probe, now_ms=1_700_000_000_000)
    except ValidationError as exc:
        raise MappingError(f"[constants] {exc.field}: {exc}") from None


def load_mapping(path: Path) -> HistoryMapping:
    """Read and parse the mapping file at ``path``.

    Raises:
        MappingError: the file is missing, not TOML, or a key is wrong (named).
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"mapping file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}") from exc
    return parse_mapping(raw, str(path))


def derive_event_id(value: str, namespace: uuid.UUID = IMPORT_NAMESPACE) -> str:
    """``value`` when it is a canonical UUID, else the stable uuid5 of it in ``namespace``: the same
    id in the same file always gives the same event id, which is what makes re-imports detectable."""
    if _UUID.fullmatch(value):
        return value
    # uuid.uuid5 by hand (RFC 4122 section 4.3): the same bytes without building a UUID object,
    # a tenth of the importer's time per row otherwise. The unit tests compare it with uuid.uuid5.
    digest = bytearray(hashlib.sha1(namespace.bytes + value.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def to_minor(amount: object, currency: str) -> int:
    """An amount in major units of ``currency`` -> its minor units (``12.34`` EUR -> 1234, ``1234``
    JPY -> 1234), exactly (decimal, not binary, arithmetic).

    Raises:
        ValidationError: on ``amount``: not a number, or more decimals than the currency has.
        ValidationError: on ``currency``: unknown.
    """
    if currency not in CURRENCIES:
        raise ValidationError("currency", currency, "unknown ISO 4217 currency")
    exponent = CURRENCIES[currency][0]
    if isinstance(amount, bool) or amount is None or amount == "":
        raise ValidationError("amount", amount, "missing or not a number")
    try:
        # repr of a float is its shortest round-trip form: 57.16 stays 57.16, not 57.15999...
        value = Decimal(repr(amount) if isinstance(amount, float) else str(amount).strip())
    except InvalidOperation:
        raise ValidationError("amount", amount, "not a number") from None
    if not value.is_finite():
        raise ValidationError("amount", amount, "not a finite number")
    minor = value.scaleb(exponent)
    whole = minor.to_integral_value()
    # Float arithmetic upstream leaves noise (128.35000000000002): within a millionth of a minor unit
    # (or 1e-9 of the amount) it is noise and rounds away; 12.345 EUR is a real third decimal.
    if abs(minor - whole) > max(_NOISE, abs(minor) * _RELATIVE_NOISE):
        raise ValidationError("amount", amount, f"has more decimals than {currency}'s {exponent}")
    return int(whole)


def epoch_to_ms(number: float) -> int:
    """An epoch number in seconds or milliseconds (decided by magnitude, see ``EPOCH_MS_THRESHOLD``)."""
    return round(number * 1000) if abs(number) < EPOCH_MS_THRESHOLD else round(number)


def parse_time_ms(value: object, name: str = "event_time") -> int:
    """A timestamp -> epoch milliseconds, UTC: ISO-8601 text (a space may stand for the ``T``; no
    offset means UTC), epoch seconds or milliseconds (number or digits), or a ``datetime``.

    Raises:
        ValidationError: naming ``name`` and the value.
    """
    if isinstance(value, bool) or value is None:
        raise ValidationError(name, value, "missing or not a timestamp")
    if isinstance(value, int):
        return epoch_to_ms(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(name, value, "not a finite epoch number")
        return epoch_to_ms(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (moment - _EPOCH) // _MS_DELTA
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return epoch_to_ms(int(text) if text.lstrip("+-").isdigit() else float(text))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(
                name, value, "not ISO-8601 (2025-01-31T12:00:00Z, a space for the T) nor epoch s/ms"
            ) from None
        return parse_time_ms(moment, name)
    raise ValidationError(name, value, f"a {type(value).__name__} is not a timestamp")


def parse_bool(value: object, name: str = "is_fraud") -> bool:
    """0/1, true/false (any case), yes/no, or a boolean.

    Raises:
        ValidationError: naming ``name`` and the value."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if value is not None else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError(name, value, "must be 0/1 or true/false")


def _text(value: object) -> str | None:
    """A cell as text: ids written as floats by pandas (``12.0``) read as ``12``; empty is None."""
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    return text if text.strip() else None


@dataclass(frozen=True, slots=True)
class Row:
    """A converted row: its 1-based number in the file, the validated payment and its label record."""

    number: int
    txn: Transaction
    label: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Reject:
    """A refused row: its 1-based number (the first data row is 1), the field and the reason, with
    any card number masked."""

    number: int
    field: str
    reason: str


def read_table(path: Path, mapping: HistoryMapping) -> pa.Table:
    """The mapped columns of a CSV or Parquet file (by its suffix; ``.csv.gz`` too). CSV cells are
    read as text, so ids keep their leading zeros and the conversion decides what a value means.

    Raises:
        MappingError: the file is missing or unreadable, or a mapped column is not in it.
    """
    if not path.is_file():
        raise MappingError(f"--file {path} does not exist")
    wanted = mapping.file_columns()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            present = pq.read_schema(path).names
            _require(mapping, wanted, present)
            return pq.read_table(path, columns=wanted)
        with pa_csv.open_csv(path) as reader:  # the header only, to name missing columns ourselves
            present = reader.schema.names
        _require(mapping, wanted, present)
        options = pa_csv.ConvertOptions(
            include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string())
        )
        return pa_csv.read_csv(path, convert_options=options)
    except (pa.ArrowException, OSError) as exc:
        raise MappingError(f"--file {path}: cannot be read as {path.suffix or 'CSV'}: {exc}") from exc


def _require(mapping: HistoryMapping, wanted: list[str], present: list[str]) -> None:
    missing = [c for c in wanted if c not in present]
    if missing:
        raise MappingError(
            "; ".join(f"{mapping.where(c)} = {c!r}: no such column in the file" for c in missing)
            + f" (its columns: {', '.join(present)})"
        )


def _columns(table: pa.Table, mapping: HistoryMapping) -> dict[str, list[Any]]:
    """Column name -> its values as Python objects; timestamp columns already as epoch ms."""
    out: dict[str, list[Any]] = {}
    for name in mapping.file_columns():
        column = table.column(name)
        kind = column.type
        if pa.types.is_timestamp(kind):
            # The int64 under a timestamp is UTC whatever its zone (a zone-less one is taken as UTC).
            per_ms = {"s": 0.001, "ms": 1, "us": 1000, "ns": 1_000_000}[kind.unit]
            ints = pc.cast(column, pa.int64())
            if per_ms == 0.001:
                out[name] = [None if v is None else v * 1000 for v in ints.to_pylist()]
            else:
                out[name] = [None if v is None else v // per_ms for v in ints.to_pylist()]
        elif pa.types.is_date(kind):
            out[name] = [
                None if d is None else datetime(d.year, d.month, d.day, tzinfo=UTC)
                for d in column.to_pylist()
            ]
        else:
            out[name] = column.to_pylist()
    return out


def convert(table: pa.Table, mapping: HistoryMapping, now_ms: int) -> Iterator[Row | Reject]:
    """Each row of ``table`` as a :class:`Row` (validated by the job's validation, with ``now_ms`` as
    the processing time) or a :class:`Reject` naming its first bad field; in file order.

    Raises:
        MappingError: a mapped column is not in ``table``.
    """
    _require(mapping, mapping.file_columns(), table.column_names)
    data = _columns(table, mapping)
    cols = mapping.columns
    # (field, its column's values, its translation table), bound once: this loop is the import's cost.
    text_fields = [
        (k, data[cols[k]], mapping.values.get(k))
        for k in FIELD_KEYS
        if k in cols and k not in ("amount", "event_time", "event_id")
    ]
    ids, amounts, times = data[cols["event_id"]], data[cols["amount"]], data[cols["event_time"]]
    label = mapping.label
    for index in range(table.num_rows):
        number = index + 1
        try:
            record: dict[str, Any] = dict(mapping.constants)
            for key, values, table_of in text_fields:
                value = values[index]
                if type(value) is not str or not value.strip():
                    value = _text(value)
                if table_of is not None and value is not None:
                    value = table_of.get(value, value)
                if value is None and key != "device_id":
                    raise ValidationError(key, value, f"missing (column {cols[key]!r} is empty)")
                record[key] = value
            raw_id = _text(ids[index])
            if raw_id is None:
                raise ValidationError("event_id", raw_id, f"missing (column {cols['event_id']!r} is empty)")
            record["event_id"] = derive_event_id(raw_id, mapping.namespace)
            record["amount_minor"] = to_minor(amounts[index], record["currency"])
            record["event_time"] = parse_time_ms(times[index])
            txn = validate(record, now_ms=now_ms)
            label_record = _label(data, label, mapping, index, txn) if label else None
        except ValidationError as exc:
            # ValidationError masks a card number in the value already; mask_pans covers the rest.
            yield Reject(number, exc.field, mask_pans(str(exc)))
            continue
        yield Row(number, txn, label_record)


def _label(
    data: dict[str, list[Any]], label: LabelMapping, mapping: HistoryMapping, index: int, txn: Transaction
) -> dict[str, Any]:
    is_fraud = parse_bool(data[label.is_fraud][index])
    fraud_type = None
    if is_fraud and label.fraud_type:
        fraud_type = _text(data[label.fraud_type][index])
        table_of = mapping.values.get("fraud_type")
        if table_of is not None and fraud_type is not None:
            fraud_type = table_of.get(fraud_type, fraud_type)
    if label.labelled_at:
        labelled_at = parse_time_ms(data[label.labelled_at][index], "labelled_at")
        if labelled_at < txn.event_time:
            raise ValidationError("labelled_at", labelled_at, f"is before the event_time {txn.event_time}")
    else:
        labelled_at = txn.event_time + (label.delay_ms or 0)
    return {
        "event_id": txn.event_id,
        "is_fraud": is_fraud,
        "fraud_type": fraud_type,
        "labelled_at": labelled_at,
        "source": "import",
        "card_id": txn.card_id,
        "merchant_id": txn.merchant_id,
    }
