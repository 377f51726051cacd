"""Header validation in-process: what a hostile producer can put in ``correlation_id`` and
``traceparent`` never travels on, never reaches a log raw, and never reaches an HTTP header."""

from __future__ import annotations

import logging
import re

import pytest

from fraud_core.kafka.headers import correlation_id, http_headers, propagated

VALID_TRACE = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FRESH_TRACE = re.compile(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01")
FRESH_ID = re.compile(rb"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "value",
    [
        b"x\r\ny",
        b"x\ny",
        b"cid\x00",
        b"a b",
        b"",
        b"c" * 129,
        "caf\u00e9".encode(),
        b"\xff\xfe",
        b"x\r\nX-Evil: 1",
    ],
)
def test_an_invalid_correlation_id_is_replaced_and_the_replacement_logged_escaped(
    value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fraud_core.kafka.headers"):
        out = propagated([("correlation_id", value), ("traceparent", VALID_TRACE)])
    assert FRESH_ID.fullmatch(out["correlation_id"]), out
    assert out["traceparent"] == VALID_TRACE
    [line] = [r.getMessage() for r in caplog.records]
    assert "correlation_id" in line and out["correlation_id"].decode() in line
    assert not any(ch in line for ch in "\r\n\x00")


@pytest.mark.parametrize(
    "value",
    [
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase hex
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has no more fields
        b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # trace id one digit short
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        b"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
        b"00-x",
    ],
)
def test_an_invalid_traceparent_is_replaced(value: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fraud_core.kafka.headers"):
        out = propagated({"correlation_id": b"cid-1", "traceparent": value})
    assert out["correlation_id"] == b"cid-1"
    assert FRESH_TRACE.fullmatch(out["traceparent"]) and out["traceparent"] != value
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    "value",
    [
        VALID_TRACE,
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",  # later versions may extend
    ],
)
def test_a_valid_traceparent_travels_unchanged(value: bytes) -> None:
    assert propagated({"traceparent": value}) == {"traceparent": value}


def test_valid_correlation_ids_travel_unchanged() -> None:
    for value in (b"cid-1", b"4bf92f3577b34da6a3ce929d0e0e4736", b"corr.test:42/a+b=c@d~e_f", b"c" * 128):
        assert propagated({"correlation_id": value}) == {"correlation_id": value}


def test_reading_the_correlation_id_for_a_log_validates_it_too() -> None:
    assert correlation_id({"correlation_id": b"ok-1"}) == "ok-1"
    fresh = correlation_id({"correlation_id": b"x\r\ny"})
    assert FRESH_ID.fullmatch(fresh.encode())


def test_no_control_character_reaches_an_http_header() -> None:
    out = http_headers({"correlation_id": b"x\r\nX-Evil: 1", "traceparent": VALID_TRACE, "other": b"\n"})
    assert set(out) == {"correlation-id", "traceparent"}
    assert out["traceparent"] == VALID_TRACE.decode()
    assert FRESH_ID.fullmatch(out["correlation-id"].encode())
