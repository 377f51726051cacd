"""The Avro contracts of every topic, loaded from the ``.avsc`` files beside this module.

No schema is written out anywhere else in the code: producers, the stream job, the consumers
and the tests all get their schema from :func:`load` or :data:`BY_TOPIC`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_DIR = Path(__file__).resolve().parent

TRANSACTION = "payment_initiated"
DECISION = "decision"
DEAD_LETTER = "dead_letter"
LABEL = "label"
ACTION = "action"


@cache
def _file_text(name: str) -> str:
    return (SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8")


def load_json(name: str) -> dict[str, Any]:
    """Return the schema ``name`` (file stem under ``schemas/``) as parsed JSON: a fresh copy on
    every call, so a caller that derives a new version from it cannot change everyone's schema."""
    return dict(json.loads(_file_text(name)))


def load_text(name: str) -> str:
    """Return the schema ``name`` as canonical JSON text, the form registered in the registry."""
    return json.dumps(load_json(name), separators=(",", ":"))


@cache
def load(name: str) -> Any:
    """Return the schema ``name`` parsed by fastavro, ready for reading and writing."""
    return fastavro.parse_schema(load_json(name))
