"""Kafka headers: those a new input event gets, and those that travel from it to every record
derived from it (decisions, audits, dead letters). docs/INTERFACES.md: ``correlation_id`` and W3C
``traceparent``; changing the propagated headers touches only this file.

Header values come from whoever can write to the input topic, so they are validated wherever they
are read (:func:`propagated`, :func:`correlation_id`): they end up in logs and in HTTP headers (the
scoring call, the webhook), where a CR/LF would split a header or make the HTTP client refuse the
call. An invalid value is replaced by a fresh one, and the replacement is logged with the refused
value escaped and shortened, never raw.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

PROPAGATED = ("correlation_id", "traceparent")

# A header as confluent-kafka hands it over (value bytes, str or None), as a mapping or as pairs.
RawHeaders = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]]

CORRELATION_ID_MAX = 128
# Letters, digits and a few separators: safe in a log line, an HTTP header value and a URL.
_CORRELATION_ID = re.compile(rb"[A-Za-z0-9._:/+=@~-]{1,%d}" % CORRELATION_ID_MAX)
# W3C Trace Context (https://www.w3.org/TR/trace-context/#traceparent-header): version, trace id,
# parent id and flags, lowercase hex. Version ff is invalid; a later version may append fields
# after a dash, version 00 may not.
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]{1,200})?")
_ZERO_TRACE = b"0" * 32
_ZERO_PARENT = b"0" * 16
SHOWN_BYTES = 40  # how much of a refused value a log line shows, escaped


def new_headers(correlation_id: str | None = None) -> list[tuple[str, bytes]]:
    """Fresh ``correlation_id`` (unless given) and W3C ``traceparent`` headers for a new input event.

    ``os.urandom`` rather than ``uuid4``: one system call for all the ids, on the producer's hot path.
    """
    ids = os.urandom(32).hex()  # 16 bytes of correlation id, 16 of trace id
    span = os.urandom(8).hex()
    return [
        ("correlation_id", (correlation_id or ids[:32]).encode()),
        ("traceparent", f"00-{ids[32:]}-{span}-01".encode()),
    ]


def valid_correlation_id(value: bytes) -> bool:
    """1 to 128 characters of ``A-Z a-z 0-9 . _ : / + = @ ~ -``."""
    return _CORRELATION_ID.fullmatch(value) is not None


def valid_traceparent(value: bytes) -> bool:
    """A W3C ``traceparent``: lowercase hex fields, version not ``ff``, ids not all zeros."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, _flags, extra = match.groups()
    if version == b"ff" or (version == b"00" and extra is not None):
        return False
    return trace_id != _ZERO_TRACE and parent_id != _ZERO_PARENT


def _fresh(name: str) -> bytes:
    if name == "correlation_id":
        return os.urandom(16).hex().encode()
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01".encode()


_VALID = {"correlation_id": valid_correlation_id, "traceparent": valid_traceparent}


def shown(value: bytes | str) -> str:
    """A refused header value as a log may show it: escaped (no control bytes) and shortened."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
    text = repr(raw[:SHOWN_BYTES])
    return text + (f"... ({len(raw)} bytes)" if len(raw) > SHOWN_BYTES else "")


def checked(name: str, value: bytes | str) -> bytes:
    """``value`` of header ``name`` when valid, else a fresh value (the replacement is logged)."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
    if _VALID[name](raw):
        return raw
    fresh = _fresh(name)
    log.warning("invalid %s header %s replaced by %s", name, shown(raw), fresh.decode())
    return fresh


def propagated(headers: RawHeaders | None) -> dict[str, bytes]:
    """The headers of ``headers`` that travel to every record derived from it, as bytes, each
    validated (an invalid value is replaced by a fresh one; see the module docstring)."""
    if not headers:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {name: checked(name, value) for name, value in pairs if name in PROPAGATED and value is not None}


def correlation_id(headers: Mapping[str, bytes | None]) -> str:
    """The ``correlation_id`` header as text for logs and HTTP headers; empty when absent, a fresh
    id when invalid."""
    raw = headers.get("correlation_id")
    return checked("correlation_id", raw).decode() if raw else ""


def http_headers(headers: Mapping[str, bytes]) -> dict[str, str]:
    """The propagated headers as HTTP request headers (``correlation-id``, ``traceparent``), each
    validated again: no value with a control character reaches an HTTP call."""
    return {
        name.replace("_", "-"): checked(name, value).decode()
        for name, value in headers.items()
        if name in PROPAGATED
    }
