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
def load_json(name: str) -> dict[str, Any]:
    """Return the schema ``name`` (file stem under ``schemas/``) as parsed JSON."""
    with (SCHEMA_DIR / f"{name}.avsc").open(encoding="utf-8") as f:
        return dict(json.load(f))


def load_text(name: str) -> str:
    """Return the schema ``name`` as canonical JSON text, the form registered in the registry."""
    return json.dumps(load_json(name), separators=(",", ":"))


@cache
def load(name: str) -> Any:
    """Return the schema ``name`` parsed by fastavro, ready for reading and writing."""
    return fastavro.parse_schema(load_json(name))
