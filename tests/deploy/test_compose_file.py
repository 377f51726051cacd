"""docker-compose.yml: valid against the Compose Specification schema, self-consistent, and in agreement
with CONTRACT.md and the services' settings classes. Offline: no Docker engine is involved.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest

from fraud_core.settings import ScoringClientSettings
from tests.deploy.conftest import DEPLOY, ROOT

CONTAINER_VARS = {  # variables read by a third-party image, not by our settings classes
    "fraud-flink": {"FLINK_PROPERTIES", "ENABLE_BUILT_IN_PLUGINS"},
}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


# Each of our compose services -> the settings class whose fields are its environment. A module that does
# not exist yet makes its test fail (not skip): the deployment must not run ahead of the code.
SETTINGS = {
    "init": "fraud_core.settings:ConnectionSettings",
    "scoring": "inference_service.core.config:Settings",
    "flink-taskmanager": "flink_jobs.settings:JobSettings",
    "flink-submit": "flink_jobs.settings:JobSettings",
    "consumers": "actions.settings:ConsumerSettings",
    "console": "console.settings:ConsoleSettings",
    "drift-monitor": "monitoring.settings:MonitorSettings",
    "producer": "producers.settings:ProducerSettings",
}


def settings_for(service: str) -> type:
    module, _, name = SETTINGS[service].partition(":")
    return getattr(importlib.import_module(module), name)


OUR_SERVICES = tuple(SETTINGS)


def env_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((DEPLOY / "compose" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_every_service_is_built_or_uses_a_pinned_image(compose: dict[str, Any]) -> None:
    built_images = {s["image"] for s in compose["services"].values() if "build" in s and "image" in s}
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image or "build" in svc, f"{name}: neither build nor image"
        if image:
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest" and "/" not in tag, (
                f"{name}: image {image!r} is not pinned"
            )
            if "build" not in svc and repo.startswith("fraud-"):
                assert image in built_images, f"{name}: {image} is not built by any service"
        if "build" in svc:
            dockerfile = ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"


def test_dockerfiles_pin_bases_and_drop_root() -> None:
    for path in sorted((DEPLOY / "docker").glob("*.Dockerfile")):
        text = path.read_text()
        args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
        for base in re.findall(r"^FROM (\S+)", text, re.M):
            base = args.get(base.strip("${}"), base)
            if ":" in base:
                assert not base.endswith(":latest"), f"{path.name}: {base}"
            else:  # a stage name defined earlier
                assert re.search(rf"^FROM \S+ AS {re.escape(base)}$", text, re.M), (
                    f"{path.name}: unpinned {base}"
                )
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and users[-1] not in ("root", "0", "0:0"), f"{path.name}: last USER is root"
        assert "HEALTHCHECK" in text, f"{path.name}: no HEALTHCHECK"
        assert not re.search(r"(API_KEY|PASSWORD|SECRET)\s*=", text), f"{path.name}: a secret in the image"


def test_depends_on_refers_to_defined_services_and_named_volumes_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                target = services[dep]
                own = target.get("healthcheck", {})
                image_has_one = target.get("image", "").startswith("fraud-") or "build" in target
                assert (own and not own.get("disable")) or image_has_one, f"{dep} has no health check"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
            else:
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_host_ports_are_the_contract_defaults(compose: dict[str, Any]) -> None:
    defaults = ScoringClientSettings(APP_ENV="local")
    expected = {
        "kafka": int(defaults.KAFKA_BOOTSTRAP_SERVERS.rsplit(":", 1)[1]),
        "schema-registry": urlparse(defaults.SCHEMA_REGISTRY_URL).port,
        "redis": urlparse(defaults.REDIS_URL).port,
        "scoring": urlparse(defaults.SCORING_URL).port,
    }
    for name, port in expected.items():
        published = {int(p.split(":")[0]) for p in compose["services"][name]["ports"]}
        assert port in published, f"{name}: host port {port} (CONTRACT.md default) not published"


def test_connection_values_point_at_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = services["kafka"]["environment"]
    internal = next(
        a for a in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",") if a.startswith("INTERNAL://")
    )
    kafka_internal = internal.removeprefix("INTERNAL://")
    registry_port = int(services["schema-registry"]["ports"][0].split(":")[1])
    scoring_port = int(services["scoring"]["environment"]["SCORING_PORT"])
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 1
    assert int(kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 1
    for name in OUR_SERVICES:
        env = env_of(services[name])
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_internal, name
        if "SCHEMA_REGISTRY_URL" in env:
            assert env["SCHEMA_REGISTRY_URL"] == f"http://schema-registry:{registry_port}/apis/ccompat/v7", (
                name
            )
        if "REDIS_URL" in env:
            assert urlparse(env["REDIS_URL"]).hostname == "redis" and urlparse(env["REDIS_URL"]).port == 6379
        if "SCORING_URL" in env:
            assert env["SCORING_URL"] == f"http://scoring:{scoring_port}", name
    assert "scoring:8000" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_every_variable_is_a_settings_field(compose: dict[str, Any], service: str) -> None:
    svc = compose["services"][service]
    fields = set(settings_for(service).model_fields)
    allowed = fields | CONTAINER_VARS.get(svc["image"].split(":")[0], set())
    unknown = set(env_of(svc)) - allowed
    assert not unknown, f"{service}: {sorted(unknown)} are not fields of {settings_for(service).__name__}"


def test_no_secret_values_in_compose(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for key, value in env_of(svc).items():
            if re.search(r"KEY|PASSWORD|SECRET|TOKEN", key):
                assert value is None or INTERPOLATION.fullmatch(str(value)), (
                    f"{name}: {key} has a literal value"
                )


def test_env_example_covers_every_interpolated_variable() -> None:
    used = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= documented, f".env.example lacks {sorted(used - documented)}"
