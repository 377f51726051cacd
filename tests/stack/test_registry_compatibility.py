"""The real registry enforces BACKWARD_TRANSITIVE on our subjects."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable

import fastavro
import pytest

import schemas
from fraud_core.exceptions import RegistryError
from fraud_core.registry import RegistryClient
from fraud_core.topics import COMPATIBILITY

pytestmark = pytest.mark.integration


def _with_fields(fields: list[dict[str, object]]) -> str:
    schema = copy.deepcopy(schemas.load_json(schemas.TRANSACTION))
    schema["fields"] = fields
    return json.dumps(schema)


def test_optional_field_with_default_registers(stack, make_topic: Callable[..., str]) -> None:  # type: ignore[no-untyped-def]
    subject = f"{make_topic('compat')}-value"
    fields = [
        *schemas.load_json(schemas.TRANSACTION)["fields"],
        {"name": "mcc_group", "type": "string", "default": ""},
    ]
    client = RegistryClient(stack.registry_url)
    new_id = client.register(subject, _with_fields(fields))
    assert new_id > 0


def test_adding_a_field_without_default_is_refused(stack, make_topic: Callable[..., str]) -> None:  # type: ignore[no-untyped-def]
    subject = f"{make_topic('compat')}-value"
    # A new reader cannot fill a field without default from old data: BACKWARD breaks.
    fields = [*schemas.load_json(schemas.TRANSACTION)["fields"], {"name": "risk_flag", "type": "boolean"}]
    with pytest.raises(RegistryError, match="409"):
        RegistryClient(stack.registry_url).register(subject, _with_fields(fields))


def test_changing_a_field_type_is_refused(stack, make_topic: Callable[..., str]) -> None:  # type: ignore[no-untyped-def]
    subject = f"{make_topic('compat')}-value"
    fields = [
        {**f, "type": "string"} if f["name"] == "amount_minor" else f
        for f in schemas.load_json(schemas.TRANSACTION)["fields"]
    ]
    with pytest.raises(RegistryError, match="409"):
        RegistryClient(stack.registry_url).register(subject, _with_fields(fields))


def test_decision_schema_with_action_and_rules_evolves_from_the_previous_one(  # type: ignore[no-untyped-def]
    stack, make_topic: Callable[..., str]
) -> None:
    """The fields added for review-vs-block and the rules carry defaults: the registry (at the
    project's compatibility level) accepts the new schema over the previous one, and records
    written with either schema are read with the other (fastavro schema resolution)."""
    subject = f"{make_topic('compat', schema=None)}-value"
    client = RegistryClient(stack.registry_url)
    client.set_compatibility(COMPATIBILITY, subject)
    current = schemas.load_json(schemas.DECISION)
    added = {"action", "rules_fired", "rules_version", "block_threshold"}
    assert added <= {f["name"] for f in current["fields"]}
    previous = {**current, "fields": [f for f in current["fields"] if f["name"] not in added]}
    old_id = client.register(subject, json.dumps(previous))
    new_id = client.register(subject, schemas.load_text(schemas.DECISION))
    assert new_id != old_id
    old_schema, new_schema = fastavro.parse_schema(previous), schemas.load(schemas.DECISION)
    record = {
        "event_id": "e", "user_id": "u", "decision": "FLAGGED", "score": 0.5, "threshold": 0.4,
        "model_version": "m", "reasons": [], "degraded": False, "features": {}, "event_time": 1,
        "decided_at": 2,
    }  # fmt: skip
    for writer, reader in ((old_schema, new_schema), (new_schema, old_schema)):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, writer, reader)
        assert read["decision"] == "FLAGGED"
        if reader is new_schema:
            assert (read["action"], read["rules_fired"], read["rules_version"]) == ("APPROVE", [], "")
    # The same addition without defaults is what the registry refuses.
    broken = {
        **current,
        "fields": [
            {k: v for k, v in f.items() if k != "default"} if f["name"] in added else f
            for f in current["fields"]
        ],
    }
    with pytest.raises(RegistryError, match="409"):
        client.register(subject, json.dumps(broken))
