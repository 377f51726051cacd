"""The JVM decoder (``DECODE_IN=jvm``: ``decode_payment`` of deploy/maven/decoder, flink_jobs/jvm_decode.py)
against the Python decoder, on the same bytes and the same real registry.

The function runs in a real PyFlink mini-cluster (``jvm_decode_probe``, its own process); its rows go
through the job's Python half (:func:`flink_jobs.jvm_decode.transaction`) and must give what the
Python path (``fraud_core.avro.decode`` + ``validate``, as ``Intake.decode`` does) gives: the same
fields, or the same dead-letter reason and detail. Only the library's own wording of a corrupt Avro
body differs (fastavro's exception against Avro Java's); its reason and the ``schema id N`` prefix
do not. The whole job with ``DECODE_IN=jvm`` (key check, dead letters with their bytes) is
``test_jvm_decode_job.py``.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from pyflink.common import Row

import schemas
from flink_jobs import jvm_decode
from flink_jobs.settings import JobSettings
from fraud_core import avro
from fraud_core.exceptions import DecodeError
from fraud_core.registry import RegistryClient
from fraud_core.transaction import Transaction, validate

pytestmark = pytest.mark.integration

NOW_MS = 1_767_225_600_000  # 2026-01-01, the processing time both paths validate against
HUGE = 2**62
JAR = Path(JobSettings.model_fields["DECODER_JAR"].default)


def payment(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=7)),
        "user_id": "u-1",
        "card_id": "card-1",
        "amount_minor": 12_345,
        "currency": "EUR",
        "merchant_id": "m-1",
        "merchant_category": "5411",
        "country": "BE",
        "channel": "ECOM",
        "event_time": NOW_MS - 60_000,
        "device_id": "dev-1",
    }
    return {**record, **changes}


def framed(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def encoded(schema_id: int, schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return framed(schema_id, buf.getvalue())


def varint(n: int) -> bytes:
    """An Avro long (zig-zag varint)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _register(client: RegistryClient, schema: dict[str, Any]) -> int:
    return client.register(f"jvm-decode.{uuid.uuid4().hex[:10]}-value", json.dumps(schema))


def _writers(client: RegistryClient) -> dict[str, tuple[int, dict[str, Any]]]:
    """Writer schemas registered for the cases: ours, a newer one, an incompatible one, a hostile one."""
    ours = schemas.load_json(schemas.TRANSACTION)
    fields = ours["fields"]
    newer = {
        **ours,
        "fields": [
            *[
                {**f, "type": {**f["type"], "symbols": [*f["type"]["symbols"], "KIOSK"]}}
                if f["name"] == "channel"
                else f
                for f in fields
            ],
            {"name": "note", "type": "string", "default": ""},
        ],
    }
    double_amount = {
        **ours,
        "fields": [{**f, "type": "double"} if f["name"] == "amount_minor" else f for f in fields],
    }
    null_items = {
        **ours,
        "fields": [*fields, {"name": "pad", "type": {"type": "array", "items": "null"}, "default": []}],
    }
    return {
        name: (_register(client, schema), schema)
        for name, schema in (
            ("ours", ours),
            ("newer", newer),
            ("double", double_amount),
            ("null_items", null_items),
        )
    }


def _cases(client: RegistryClient) -> dict[str, bytes | None]:
    w = _writers(client)
    ours_id, ours = w["ours"]
    good = encoded(ours_id, ours, payment())
    return {
        "good ECOM": good,
        "good POS, no device": encoded(ours_id, ours, payment(channel="POS", device_id=None)),
        "newer writer, unknown channel symbol, extra field": encoded(
            w["newer"][0], w["newer"][1], {**payment(channel="KIOSK"), "note": "x"}
        ),
        "bad magic byte": b"\x01" + good[1:],
        "JSON text": b'{"event_id": "x"}',
        "truncated header": good[:3],
        "empty value": b"",
        "no value": None,
        "unknown schema id": framed(ours_id + 100_000, good[5:]),
        "array of zero-size items": framed(w["null_items"][0], good[5:] + varint(HUGE)),
        "corrupt body": good[:5] + b"\xff" * 10 + b"\x01",
        "truncated body": good[:-4],
        "trailing bytes": good + b"\x00",
        "string length 2^62": framed(ours_id, varint(HUGE) + b"abc"),
        "writer with a double amount": encoded(w["double"][0], w["double"][1], payment(amount_minor=1.5)),
        "event_time 2^62": encoded(ours_id, ours, payment(event_time=HUGE)),
        "event_time negative": encoded(ours_id, ours, payment(event_time=-HUGE)),
        "card number as card_id": encoded(ours_id, ours, payment(card_id="4111 1111 1111 1111")),
        "currency unknown": encoded(ours_id, ours, payment(currency="XXX")),
        "user_id empty": encoded(ours_id, ours, payment(user_id="")),
    }


def python_path(client: RegistryClient, value: bytes | None) -> Transaction | tuple[str, str]:
    try:
        return validate(
            avro.decode(value, client.parsed_schema, schemas.load(schemas.TRANSACTION)), now_ms=NOW_MS
        )
    except DecodeError as exc:
        return exc.error_type, str(exc)


def jvm_path(decoded: list[Any]) -> Transaction | tuple[str, str]:
    try:
        return jvm_decode.transaction(Row(*decoded), now_ms=NOW_MS)
    except DecodeError as exc:
        return exc.error_type, str(exc)


def run_probe(
    tmp_path: Path, registry_url: str, values: list[bytes | None]
) -> subprocess.CompletedProcess[str]:
    source, target = tmp_path / "in.json", tmp_path / "out.json"
    source.write_text(json.dumps([None if v is None else base64.b64encode(v).decode() for v in values]))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.flink_jobs.jvm_decode_probe",
            str(source),
            str(target),
            registry_url,
            str(JAR),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def decoded(stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:  # type: ignore[no-untyped-def]
    """Per case: (the Python path's outcome, the JVM path's outcome)."""
    assert JAR.is_file(), f"{JAR} is missing: `make fetch` builds it"
    client = RegistryClient(stack.registry_url)
    cases = _cases(client)
    tmp = tmp_path_factory.mktemp("jvm-decode")
    res = run_probe(tmp, stack.registry_url, list(cases.values()))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((tmp / "out.json").read_text())
    assert len(rows) == len(cases)
    return {
        name: (python_path(client, value), jvm_path(row))
        for (name, value), row in zip(cases.items(), rows, strict=True)
    }


def test_good_records_decode_to_the_same_fields(decoded: dict[str, tuple[Any, Any]]) -> None:
    good = {name: pair for name, pair in decoded.items() if isinstance(pair[0], Transaction)}
    assert set(good) == {
        "good ECOM",
        "good POS, no device",
        "newer writer, unknown channel symbol, extra field",
    }
    for name, (python, jvm) in good.items():
        assert jvm == python, name
    assert good["good POS, no device"][1].device_id is None
    assert (
        good["newer writer, unknown channel symbol, extra field"][1].channel == "UNKNOWN"
    )  # the reader's default
    assert good["good ECOM"][1] == Transaction(**payment())


EXPECTED_REASONS = {
    "bad magic byte": "BAD_MAGIC_BYTE",
    "JSON text": "BAD_MAGIC_BYTE",
    "truncated header": "TRUNCATED",
    "empty value": "EMPTY_VALUE",
    "no value": "EMPTY_VALUE",
    "unknown schema id": "UNKNOWN_SCHEMA_ID",
    "array of zero-size items": "UNKNOWN_SCHEMA_ID",
    "corrupt body": "AVRO_DECODE",
    "truncated body": "AVRO_DECODE",
    "trailing bytes": "AVRO_DECODE",
    "string length 2^62": "AVRO_DECODE",
    "writer with a double amount": "AVRO_DECODE",
    "event_time 2^62": "VALIDATION",
    "event_time negative": "VALIDATION",
    "card number as card_id": "VALIDATION",
    "currency unknown": "VALIDATION",
    "user_id empty": "VALIDATION",
}


@pytest.mark.parametrize("case", sorted(EXPECTED_REASONS))
def test_bad_records_get_the_same_dead_letter_reason_and_detail(
    decoded: dict[str, tuple[Any, Any]], case: str
) -> None:
    (py_type, py_message), (jvm_type, jvm_message) = decoded[case]
    assert py_type == jvm_type == EXPECTED_REASONS[case]
    if jvm_message.startswith("Avro body does not match"):
        # The library's own words after the prefix: fastavro's exception, or Avro Java's.
        prefix = jvm_message.split(":", 1)[0]
        assert prefix.startswith("Avro body does not match schema id ")
        assert py_message.split(":", 1)[0] == prefix
    else:
        assert jvm_message == py_message


def test_a_registry_outage_fails_the_job_and_is_never_a_dead_letter(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}/apis/ccompat/v7"
    res = run_probe(tmp_path, closed, [framed(1, b"\x00")])
    assert res.returncode != 0
    assert "schema registry unreachable at " + closed + "/schemas/ids/1" in res.stderr
    assert not (tmp_path / "out.json").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
