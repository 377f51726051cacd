"""A small client for the Confluent-compatible schema-registry API (Apicurio's ``/apis/ccompat/v7``).

confluent-kafka's own client serves the producer; this one serves the places that need only a few
calls and must control caching and errors themselves: start-up registration, the stream job's
decoder (schemas fetched by id and cached forever, ids being immutable) and the tests.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import fastavro
import requests

from fraud_core.exceptions import RegistryError, RegistryUnavailable, SchemaNotFound

log = logging.getLogger(__name__)

_CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
# Pauses before each retry of an idempotent read while the registry is unavailable (about 7 s in all).
READ_RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 3.0)


def _unavailable(status: int) -> bool:
    """Statuses that say nothing about the request: the registry (or our access to it) is down."""
    return status >= 500 or status in (401, 403, 408, 429)


class RegistryClient:
    """Confluent-compatible registry calls with an id -> parsed schema cache."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 5.0,
        read_retry_backoff_s: tuple[float, ...] = READ_RETRY_BACKOFF_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.read_retry_backoff_s = read_retry_backoff_s
        self._session = requests.Session()
        self._by_id: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request.

        Raises:
            SchemaNotFound: HTTP 404.
            RegistryUnavailable: no connection, a timeout, HTTP 5xx, 429, or 401/403 (our credentials,
                not the request, are wrong).
            RegistryError: any other refusal (409 incompatible, 422 invalid schema, ...).
        """
        url = f"{self.base_url}{path}"
        try:
            resp = self._session.request(
                method,
                url,
                data=None if body is None else json.dumps(body),
                headers=_CT,
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"schema registry unreachable at {url}: {exc}") from exc
        if resp.status_code < 400:
            return resp.json() if resp.content else None
        message = f"{method} {url} -> HTTP {resp.status_code}: {resp.text[:500]}"
        if resp.status_code == 404:
            raise SchemaNotFound(message)
        if _unavailable(resp.status_code):
            raise RegistryUnavailable(message)
        raise RegistryError(message)

    def _read(self, path: str) -> Any:
        """A GET, retried with :attr:`read_retry_backoff_s` pauses while the registry is unavailable."""
        for pause in self.read_retry_backoff_s:
            try:
                return self._call("GET", path)
            except RegistryUnavailable as exc:
                log.warning("schema registry unavailable, retrying in %.1f s: %s", pause, exc)
                time.sleep(pause)
        return self._call("GET", path)

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects"))

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set the compatibility level globally, or for one subject."""
        path = "/config" if subject is None else f"/config/{subject}"
        self._call("PUT", path, {"compatibility": level})

    def get_compatibility(self, subject: str | None = None) -> str:
        path = "/config" if subject is None else f"/config/{subject}"
        data = self._call("GET", path)
        return str(data.get("compatibilityLevel") or data.get("compatibility"))

    def register(self, subject: str, schema_text: str) -> int:
        """Register ``schema_text`` under ``subject`` (idempotent); returns its id.

        Raises:
            RegistryError: when the registry refuses it, for example as incompatible (HTTP 409).
        """
        data = self._call(
            "POST", f"/subjects/{subject}/versions", {"schema": schema_text, "schemaType": "AVRO"}
        )
        return int(data["id"])

    def check_compatible(self, subject: str, schema_text: str) -> bool:
        data = self._call(
            "POST",
            f"/compatibility/subjects/{subject}/versions/latest",
            {"schema": schema_text, "schemaType": "AVRO"},
        )
        return bool(data.get("is_compatible"))

    def lookup_id(self, subject: str, schema_text: str) -> int:
        """Id of ``schema_text`` if already registered under ``subject``."""
        data = self._call("POST", f"/subjects/{subject}", {"schema": schema_text, "schemaType": "AVRO"})
        return int(data["id"])

    def parsed_schema(self, schema_id: int) -> Any:
        """The fastavro-parsed writer schema for ``schema_id``; fetched once, then cached.

        Raises:
            SchemaNotFound: no schema has this id (the record that carries it is bad).
            RegistryError: the schema with this id is not Avro (also the record's fault).
            RegistryUnavailable: the registry stayed unreachable through every retry.
        """
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        data = self._read(f"/schemas/ids/{schema_id}")
        try:
            parsed = fastavro.parse_schema(json.loads(data["schema"]))
        except Exception as exc:  # JSON or fastavro's SchemaParseError and friends
            raise RegistryError(f"schema id {schema_id} is not an Avro schema: {exc!r}") from exc
        unsafe = zero_size_array(parsed)
        if unsafe is not None:
            raise RegistryError(
                f"schema id {schema_id} has an array of items that take no bytes ({unsafe}): a record "
                "claiming 2^62 of them would keep the decoder busy for ever, so it is not accepted"
            )
        with self._lock:
            self._by_id[schema_id] = parsed
        return parsed


def zero_size_array(schema: Any) -> str | None:
    """The path of an array whose items encode in zero bytes (``null``, ``fixed`` of size 0, a
    record of such fields), or None. fastavro reads (or skips) an array item by item: with items
    of no size a forged block count near 2^62 never reaches the end of the buffer and never fails.
    """
    names: dict[str, Any] = {}
    _collect_named(schema, names)
    return _find_zero_size_array(schema, "", frozenset(), names)


def _collect_named(t: Any, names: dict[str, Any]) -> None:
    """Every named type (record, error, enum, fixed) of the schema by name, since a later reference to
    it is by name alone."""
    if isinstance(t, list):
        for branch in t:
            _collect_named(branch, names)
    elif isinstance(t, dict):
        if t.get("type") in ("record", "error", "enum", "fixed") and "name" in t:
            names[t["name"]] = t
        for f in t.get("fields", ()):
            _collect_named(f["type"], names)
        for key in ("items", "values"):
            if key in t:
                _collect_named(t[key], names)
        if isinstance(t.get("type"), dict | list):
            _collect_named(t["type"], names)


def _encodes_empty(t: Any, seen: frozenset[str], names: Mapping[str, Any]) -> bool:
    """Whether a value of type ``t`` takes no bytes; ``seen`` stops at recursive references."""
    if isinstance(t, str):
        if t == "null":
            return True
        return t in names and t not in seen and _encodes_empty(names[t], seen | {t}, names)
    if isinstance(t, dict):
        kind = t.get("type")
        if kind in ("record", "error"):
            inner = seen | {t.get("name", "")}
            return all(_encodes_empty(f["type"], inner, names) for f in t.get("fields", ()))
        if kind == "fixed":
            return int(t.get("size", 1)) == 0
        if isinstance(kind, str | dict) and kind not in ("array", "map", "enum"):
            return _encodes_empty(kind, seen, names)
    return False  # a union's branch index and an array's block count take a byte at least


def _find_zero_size_array(t: Any, path: str, seen: frozenset[str], names: Mapping[str, Any]) -> str | None:
    """The first array under ``t`` (at ``path``) whose items take no bytes, walking records, unions, maps
    and named references once each."""
    if isinstance(t, str):
        return (
            _find_zero_size_array(names[t], path, seen | {t}, names) if t in names and t not in seen else None
        )
    if isinstance(t, list):
        for branch in t:
            if (hit := _find_zero_size_array(branch, path, seen, names)) is not None:
                return hit
        return None
    if not isinstance(t, dict):
        return None
    if t.get("type") == "array":
        if _encodes_empty(t.get("items"), frozenset(), names):
            return path or "<root>"
        return _find_zero_size_array(t.get("items"), f"{path}[]", seen, names)
    if t.get("type") == "map":
        return _find_zero_size_array(t.get("values"), f"{path}{{}}", seen, names)
    if t.get("type") in ("record", "error"):
        inner = seen | {t.get("name", "")}
        for f in t.get("fields", ()):
            field_path = f"{path}.{f['name']}" if path else f["name"]
            if (hit := _find_zero_size_array(f["type"], field_path, inner, names)) is not None:
                return hit
        return None
    kind = t.get("type")
    return _find_zero_size_array(kind, path, seen, names) if isinstance(kind, dict | list) else None
