"""The real registry enforces BACKWARD_TRANSITIVE on our subjects."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

import schemas
from fraud_core.exceptions import RegistryError
from fraud_core.registry import RegistryClient

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
