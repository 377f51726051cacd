"""Kafka headers: those a new input event gets, and those that travel from it to every record
derived from it (decisions, audits, dead letters). CONTRACT: ``correlation_id`` and W3C
``traceparent``; changing the propagated headers touches only this file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

PROPAGATED = ("correlation_id", "traceparent")

# A header as confluent-kafka hands it over (value bytes, str or None), as a mapping or as pairs.
RawHeaders = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]]


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


def propagated(headers: RawHeaders | None) -> dict[str, bytes]:
    """The headers of ``headers`` that travel to every record derived from it, as bytes."""
    if not headers:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {
        name: value if isinstance(value, bytes) else value.encode()
        for name, value in pairs
        if name in PROPAGATED and value is not None
    }


def correlation_id(headers: Mapping[str, bytes | None]) -> str:
    """The ``correlation_id`` header as text for logs; empty when absent."""
    raw = headers.get("correlation_id")
    return raw.decode("utf-8", "replace") if raw else ""
