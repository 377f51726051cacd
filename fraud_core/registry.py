"""A small client for the Confluent-compatible schema-registry API (Apicurio's ``/apis/ccompat/v7``).

confluent-kafka's own client serves the producer; this one serves the places that need only a few
calls and must control caching and errors themselves: start-up registration, the stream job's
decoder (schemas fetched by id and cached forever, ids being immutable) and the tests.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import fastavro
import requests

from fraud_core.exceptions import RegistryError

_CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


class RegistryClient:
    """Confluent-compatible registry calls with an id -> parsed schema cache."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._by_id: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
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
            raise RegistryError(f"schema registry unreachable at {url}: {exc}") from exc
        if resp.status_code >= 400:
            raise RegistryError(f"{method} {url} -> HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

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
        """The fastavro-parsed writer schema for ``schema_id``; fetched once, then cached."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        data = self._call("GET", f"/schemas/ids/{schema_id}")
        parsed = fastavro.parse_schema(json.loads(data["schema"]))
        with self._lock:
            self._by_id[schema_id] = parsed
        return parsed
