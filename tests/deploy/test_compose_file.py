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
# Variables a service's own shell command reads (and unsets) before it starts our code.
COMMAND_VARS = {"init": {"REGISTRY_WRITER_PASSWORD"}}
# Compose interpolation; "$$" is an escaped dollar (a shell variable in a command), not one.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


# Each of our compose services -> the settings class whose fields are its environment. A module that does
# not exist yet makes its test fail (not skip): the deployment must not run ahead of the code.
SETTINGS = {
    "init": "fraud_core.settings:ConnectionSettings",
    "kafka-acls": "fraud_core.settings:ConnectionSettings",
    "registry-proxy": "deploy.compose.registry_proxy:ProxySettings",
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


def host_port(mapping: str) -> int:
    """The host port of a ``[ip:]host:container`` port mapping."""
    return int(mapping.split(":")[-2])


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
        "registry-proxy": urlparse(defaults.SCHEMA_REGISTRY_URL).port,
        "redis": urlparse(defaults.REDIS_URL).port,
        "scoring": urlparse(defaults.SCORING_URL).port,
    }
    for name, port in expected.items():
        published = {host_port(p) for p in compose["services"][name]["ports"]}
        assert port in published, f"{name}: host port {port} (CONTRACT.md default) not published"


def test_connection_values_point_at_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = services["kafka"]["environment"]
    internal = next(
        a for a in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",") if a.startswith("INTERNAL://")
    )
    kafka_internal = internal.removeprefix("INTERNAL://")
    registry_port = int(services["registry-proxy"]["environment"]["PROXY_PORT"])
    scoring_port = int(services["scoring"]["environment"]["SCORING_PORT"])
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 1
    assert int(kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 1
    for name in OUR_SERVICES:
        env = env_of(services[name])
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_internal, name
        if "SCHEMA_REGISTRY_URL" in env:
            assert env["SCHEMA_REGISTRY_URL"] == f"http://registry-proxy:{registry_port}/apis/ccompat/v7", (
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
    image_vars = CONTAINER_VARS.get(svc["image"].split(":")[0], set())
    allowed = fields | image_vars | COMMAND_VARS.get(service, set())
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


# --- Issue 16: the compose stack locked down (one test per property) ---------------------------

# Host ports a user of this machine needs: the make targets' services and Grafana (Prometheus too).
NEEDED_PORTS = {
    "kafka": 9092,
    "registry-proxy": 8081,
    "redis": 6379,
    "scoring": 8000,
    "grafana": 3000,
    "console": 8090,
}


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for mapping in svc.get("ports", []):
            assert isinstance(mapping, str) and mapping.startswith("127.0.0.1:"), f"{name}: {mapping}"


def test_only_the_ports_a_user_needs_are_published(compose: dict[str, Any]) -> None:
    published = {
        name: {host_port(p) for p in svc.get("ports", [])} for name, svc in compose["services"].items()
    }
    extra = {n: ports for n, ports in published.items() if ports and n not in (*NEEDED_PORTS, "prometheus")}
    assert not extra, f"published without need: {extra}"
    # The Flink REST API takes job cancels and jar uploads without authentication.
    assert not published["flink-jobmanager"]


def test_the_header_comment_names_exactly_the_published_ports(compose: dict[str, Any]) -> None:
    header = []
    for line in (ROOT / "docker-compose.yml").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = " ".join(header)
    listed = text.split("Published on 127.0.0.1 only:", 1)[1].split("Nothing else", 1)[0]
    named = {int(port) for port in re.findall(r"\b(\d{4,5})\b", listed)}
    published = {
        int(mapping.split(":")[1]) for svc in compose["services"].values() for mapping in svc.get("ports", [])
    }
    assert named == published


def test_app_env_is_not_local_by_default(compose: dict[str, Any]) -> None:
    for name in OUR_SERVICES:
        app_env = env_of(compose["services"][name]).get("APP_ENV")
        if app_env is not None:
            match = INTERPOLATION.fullmatch(app_env)
            default = app_env if match is None else app_env.partition(":-")[2].rstrip("}")
            assert default not in ("local", "test", ""), f"{name}: APP_ENV defaults to {default!r}"


def test_keys_and_passwords_are_required_from_the_env_file(compose: dict[str, Any]) -> None:
    """Every key and password is ``${VAR:?message}``: compose refuses to start without it, and the
    file never holds a value (the scoring service gets both keys, the job the scoring key)."""
    for name in OUR_SERVICES:
        for key, value in env_of(compose["services"][name]).items():
            if re.search(r"KEY|PASSWORD", key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", str(value)), f"{name}: {key}={value!r}"
    scoring = env_of(compose["services"]["scoring"])
    assert {"SCORING_API_KEY", "ADMIN_API_KEY"} <= set(scoring)
    assert scoring["SCORING_API_KEY"] != scoring["ADMIN_API_KEY"]


def test_kafka_uses_sasl_and_every_client_authenticates(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols["INTERNAL"].startswith("SASL_") and protocols["EXTERNAL"].startswith("SASL_")
    users = set(re.findall(r"user_(\w+)=", kafka["KAFKA_LISTENER_NAME_INTERNAL_PLAIN_SASL_JAAS_CONFIG"]))
    # Passwords in the JAAS line are interpolated from .env, never written here.
    for password in re.findall(
        r'(?:password|user_\w+)="([^"]*)"', kafka["KAFKA_LISTENER_NAME_INTERNAL_PLAIN_SASL_JAAS_CONFIG"]
    ):
        assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", password), password
    for name in OUR_SERVICES:
        env = env_of(services[name])
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert (
                env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and env["KAFKA_SASL_MECHANISM"] == "PLAIN"
            ), name
            assert env["KAFKA_SASL_USERNAME"] in users, f"{name}: no broker user {env['KAFKA_SASL_USERNAME']}"
            # The settings class accepts what compose passes (the SASL fields are complete).
            settings = settings_for(name)
            fields = {k: v for k, v in env.items() if k.startswith("KAFKA_")} | {"KAFKA_SASL_PASSWORD": "x"}
            assert settings.model_fields.keys() >= fields.keys()
    registry = services["schema-registry"]["environment"]
    assert registry["APICURIO_KAFKA_COMMON_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert 'username="fraud_registry"' in registry["APICURIO_KAFKA_COMMON_SASL_JAAS_CONFIG"]


def test_redis_has_one_acl_user_per_application(compose: dict[str, Any]) -> None:
    from deploy.redis_users import USERS, password_variable, start_script

    redis = compose["services"]["redis"]
    # The users come from the start script (compose escapes its $), the passwords from .env through
    # the environment: no password reference on the command line.
    assert redis["command"] == ["sh", "-c", start_script(list(USERS)).replace("$", "$$")]
    assert not any(
        "PASSWORD" in arg.replace("$$", "") and "${" in arg.replace("$$", "") for arg in redis["command"]
    )
    assert redis["environment"] == {
        password_variable(u): f"${{{password_variable(u)}:?set {password_variable(u)} in .env}}"
        for u in USERS
    }
    for name in OUR_SERVICES:
        env = env_of(compose["services"][name])
        if "REDIS_URL" in env:
            user = env["REDIS_USERNAME"]
            assert user in USERS, f"{name}: unknown Redis user {user}"
            assert env["REDIS_PASSWORD"].startswith(f"${{{password_variable(user)}:?"), name


def test_grafana_is_not_anonymous(compose: dict[str, Any]) -> None:
    env = compose["services"]["grafana"]["environment"]
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]*\}", env["GF_SECURITY_ADMIN_PASSWORD"])


def test_env_example_leaves_every_secret_empty() -> None:
    """Copying .env.example unchanged must not start anything with a guessable password."""
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and re.search(r"KEY|PASSWORD", name):
            assert value == "", f".env.example gives {name} a value"
