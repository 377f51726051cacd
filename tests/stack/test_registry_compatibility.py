"""The real registry enforces FULL_TRANSITIVE on our subjects, per subject and as the global rule.

Producers upgrade before consumers, so a new writer schema must be readable by every old reader
(FORWARD) and the reverse (BACKWARD), against every earlier version (TRANSITIVE).
"""

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


def _transaction_fields() -> list[dict[str, object]]:
    return list(schemas.load_json(schemas.TRANSACTION)["fields"])


def test_the_project_level_is_full_transitive_globally_and_per_subject(  # type: ignore[no-untyped-def]
    stack, make_topic: Callable[..., str]
) -> None:
    assert COMPATIBILITY == "FULL_TRANSITIVE"
    client = RegistryClient(stack.registry_url)
    assert client.get_compatibility() == COMPATIBILITY
    assert client.get_compatibility(f"{make_topic('compat')}-value") == COMPATIBILITY


@pytest.mark.parametrize("per_subject", [True, False], ids=["subject-rule", "global-rule"])
def test_removing_a_field_without_default_is_refused(  # type: ignore[no-untyped-def]
    stack, make_topic: Callable[..., str], per_subject: bool
) -> None:
    """The finding of issue 16: under BACKWARD_TRANSITIVE a producer could drop ``merchant_id`` and
    every consumer still on the old schema would then dead-letter each record. Refused under
    the subject's rule and, for a subject that has none, under the global one."""
    if per_subject:
        subject = f"{make_topic('compat')}-value"
    else:
        subject = f"{make_topic('compat', schema=None)}-value"
        RegistryClient(stack.registry_url).register(subject, schemas.load_text(schemas.TRANSACTION))
    fields = [f for f in _transaction_fields() if f["name"] != "merchant_id"]
    with pytest.raises(RegistryError, match="409"):
        RegistryClient(stack.registry_url).register(subject, _with_fields(fields))


def test_removing_a_field_with_default_registers(stack, make_topic: Callable[..., str]) -> None:  # type: ignore[no-untyped-def]
    subject = f"{make_topic('compat')}-value"
    client = RegistryClient(stack.registry_url)
    with_default = [*_transaction_fields(), {"name": "mcc_group", "type": "string", "default": ""}]
    client.register(subject, _with_fields(with_default))
    assert client.register(subject, schemas.load_text(schemas.TRANSACTION)) > 0


def _with_symbol(schema_name: str, field: str, symbol: str) -> str:
    schema = copy.deepcopy(schemas.load_json(schema_name))
    for f in schema["fields"]:
        if f["name"] == field:
            f["type"]["symbols"].append(symbol)
    return json.dumps(schema)


def test_adding_an_enum_symbol_without_enum_default_is_refused(  # type: ignore[no-untyped-def]
    stack, make_topic: Callable[..., str]
) -> None:
    """An old reader cannot read a ``decision`` symbol it does not know (that enum has no default)."""
    subject = f"{make_topic('compat', schema=schemas.DECISION)}-value"
    with pytest.raises(RegistryError, match="409"):
        RegistryClient(stack.registry_url).register(
            subject, _with_symbol(schemas.DECISION, "decision", "HELD")
        )


def test_adding_a_channel_symbol_registers_thanks_to_the_enum_default(  # type: ignore[no-untyped-def]
    stack, make_topic: Callable[..., str]
) -> None:
    """``channel`` has the enum default UNKNOWN, so an old reader maps a new symbol to it."""
    subject = f"{make_topic('compat')}-value"
    new_id = RegistryClient(stack.registry_url).register(
        subject, _with_symbol(schemas.TRANSACTION, "channel", "SATELLITE")
    )
    assert new_id > 0


def test_compatibility_is_checked_against_every_earlier_version(  # type: ignore[no-untyped-def]
    stack, make_topic: Callable[..., str]
) -> None:
    """v1 has ``note: string``; v2 drops it (its default makes that legal); v3 brings it back as a
    long. v3 is compatible with v2, its only neighbour, but not with v1: TRANSITIVE refuses it."""
    subject = f"{make_topic('compat', schema=None)}-value"
    client = RegistryClient(stack.registry_url)
    client.register(
        subject, _with_fields([*_transaction_fields(), {"name": "note", "type": "string", "default": ""}])
    )
    client.set_compatibility(COMPATIBILITY, subject)
    client.register(subject, _with_fields(_transaction_fields()))
    v3 = _with_fields([*_transaction_fields(), {"name": "note", "type": "long", "default": 0}])
    with pytest.raises(RegistryError, match="409"):
        client.register(subject, v3)


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
    # A new reader cannot fill a field without default from old data: BACKWARD (hence FULL) breaks.
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
