"""docker-compose.yml: valid against the Compose Specification schema, self-consistent, and in agreement
with docs/INTERFACES.md and the services' settings classes. Offline: no Docker engine is involved.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

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
        assert port in published, f"{name}: host port {port} (docs/INTERFACES.md default) not published"


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


# --- Issue 24 §5: Kafka's authorizer and per-user ACLs; registry writes behind the proxy ---------------

# The Flink processes are one deployable (the job), and the two bootstrap steps are one (its user creates
# the ACLs, then the topics): the only services that share a Kafka user.
ONE_DEPLOYABLE = ({"flink-jobmanager", "flink-taskmanager", "flink-submit"}, {"init", "kafka-acls"})
# The production KafkaUser of each compose user (deploy/k8s/overlays/prod/kafka-users.yaml).
PROD_USER = {
    "fraud_job": "fraud-job",
    "fraud_consumers": "fraud-consumers",
    "fraud_console": "fraud-console",
    "fraud_monitor": "fraud-drift-monitor",
}
JAAS_SECRET = re.compile(r'\b(?:password|user_\w+)="([^"]*)"')
REQUIRED_VAR = re.compile(r"\$\{([A-Z0-9_]+):\?[^}]*\}")


def kafka_clients(compose: dict[str, Any]) -> dict[str, str]:
    """Service -> the Kafka user it authenticates as, for every one of our services that uses Kafka."""
    return {
        name: env_of(compose["services"][name])["KAFKA_SASL_USERNAME"]
        for name in OUR_SERVICES
        if "KAFKA_BOOTSTRAP_SERVERS" in env_of(compose["services"][name])
    }


def acl_set(grants: list[Any]) -> set[tuple[str, str, bool, str]]:
    return {(g.resource, g.name, g.prefixed, op) for g in grants for op in g.operations}


def test_the_broker_authorizes_every_request_and_trusts_only_itself_and_bootstrap(
    compose: dict[str, Any],
) -> None:
    from deploy.compose.kafka_acls import SUPER_USERS

    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert str(kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"]).lower() == "false"
    super_users = set(kafka["KAFKA_SUPER_USERS"].split(";"))
    assert super_users == {f"User:{u}" for u in SUPER_USERS} == {"User:broker", "User:fraud_bootstrap"}
    # No listener lets a client in as User:ANONYMOUS (which a PLAINTEXT controller listener would need
    # as a super user), and the controller listener knows the broker's user alone.
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert all(p.startswith("SASL_") for p in protocols.values()), protocols
    controller = kafka["KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG"]
    assert set(re.findall(r"user_(\w+)=", controller)) == {"broker"}
    assert 'username="broker"' in controller
    # The services that are super users: only the two bootstrap steps.
    trusted = {name for name, user in kafka_clients(compose).items() if f"User:{user}" in super_users}
    assert trusted == {"init", "kafka-acls"}


def test_every_kafka_client_authenticates_as_a_user_of_its_own(compose: dict[str, Any]) -> None:
    from deploy.compose.kafka_acls import SUPER_USERS, grants

    clients = kafka_clients(compose)
    kafka = compose["services"]["kafka"]["environment"]
    jaas = kafka["KAFKA_LISTENER_NAME_INTERNAL_PLAIN_SASL_JAAS_CONFIG"]
    password_var = {
        user: REQUIRED_VAR.fullmatch(secret).group(1)  # type: ignore[union-attr]
        for user, secret in re.findall(r'user_(\w+)="([^"]*)"', jaas)
    }
    by_user: dict[str, set[str]] = {}
    for name, user in clients.items():
        by_user.setdefault(user, set()).add(name)
        # Its password is its user's, from .env.
        assert (
            REQUIRED_VAR.fullmatch(env_of(compose["services"][name])["KAFKA_SASL_PASSWORD"]).group(1)
            == (  # type: ignore[union-attr]
                password_var[user]
            )
        ), name
    for user, names in by_user.items():
        assert len(names) == 1 or any(names <= family for family in ONE_DEPLOYABLE), (
            f"{sorted(names)} share the Kafka user {user}"
        )
    assert len(set(password_var.values())) == len(password_var), "two Kafka users share a password"
    # Every application user has ACLs, and every user with ACLs is one that some service (or the
    # registry's storage) logs in as.
    registry_user = re.search(
        r'username="(\w+)"',
        compose["services"]["schema-registry"]["environment"]["APICURIO_KAFKA_COMMON_SASL_JAAS_CONFIG"],
    ).group(1)  # type: ignore[union-attr]
    applications = (set(by_user) | {registry_user}) - set(SUPER_USERS)
    assert set(grants()) == applications


def test_each_user_may_touch_exactly_the_topics_and_groups_its_settings_name(compose: dict[str, Any]) -> None:
    """The topics and consumer groups in each user's ACLs are the ones its service's settings (the
    defaults, or what compose sets) name: none missing, none more."""
    from deploy.compose.kafka_acls import grants

    declared = grants()
    for name, user in kafka_clients(compose).items():
        if user not in declared:
            continue
        cls = settings_for(name)
        env = env_of(compose["services"][name])
        values = {f: env.get(f, field.default) for f, field in cls.model_fields.items()}
        topics = {v for f, v in values.items() if f.endswith("TOPIC") and v}
        granted = {g.name for g in declared[user] if g.resource == "topic"}
        assert granted == topics, (
            f"{name} ({user}): ACLs on {sorted(granted)}, settings name {sorted(topics)}"
        )
        groups = {g.name for g in declared[user] if g.resource == "group" and not g.prefixed}
        group_id = values.get("GROUP_ID")
        assert (group_id in groups) if group_id else not groups, (
            f"{name}: groups {groups}, GROUP_ID {group_id}"
        )
        assert all(g.startswith(group_id) for g in groups) if group_id else True, groups


def test_acls_are_the_production_users_acls(compose: dict[str, Any]) -> None:
    """Compose grants exactly what the production KafkaUser of the same application grants, read and
    write alike (the job's read-back of its own outputs, flink_jobs/resume.py, included)."""
    from deploy.compose.kafka_acls import grants

    prod = {}
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / "overlays" / "prod" / "kafka-users.yaml").read_text()):
        acls = doc["spec"]["authorization"]["acls"]
        kinds = {"topic": "topic", "group": "group", "transactionalId": "transactional_id"}
        prod[doc["metadata"]["name"]] = {
            (
                kinds[a["resource"]["type"]],
                a["resource"]["name"],
                a["resource"].get("patternType") == "prefix",
                op,
            )
            for a in acls
            for op in a["operations"]
        }
    declared = grants()
    for user, prod_user in PROD_USER.items():
        ours = acl_set(declared[user])
        # Production names the transactional-id prefix without its separator.
        ours = {(r, n.rstrip("-") if r == "transactional_id" else n, p, op) for r, n, p, op in ours}
        assert ours == prod[prod_user], (
            f"{user}: more {sorted(ours - prod[prod_user])}, less {sorted(prod[prod_user] - ours)}"
        )


def test_no_acl_reaches_beyond_its_application(compose: dict[str, Any]) -> None:
    """No wildcard, no cluster ACL, no topic admin rights for applications; the only prefixed topic
    grant (the registry's storage) matches none of the pipeline's topics, and the registry's topics
    and groups are named under the prefixes its ACLs give."""
    from deploy.compose.kafka_acls import REGISTRY_GROUP_PREFIX, REGISTRY_TOPIC_PREFIX, grants
    from fraud_core.topics import TOPICS

    for user, user_grants in grants().items():
        for g in user_grants:
            assert g.name not in ("", "*") and g.resource in ("topic", "group", "transactional_id"), (user, g)
            if g.resource == "topic" and g.prefixed:
                assert user == "fraud_registry" and not any(t.name.startswith(g.name) for t in TOPICS), g
            if user != "fraud_registry":
                assert not {"Create", "DescribeConfigs"} & set(g.operations), (user, g)
    registry = compose["services"]["schema-registry"]["environment"]
    for key in (
        "APICURIO_KAFKASQL_TOPIC",
        "APICURIO_KAFKASQL_SNAPSHOTS_TOPIC",
        "APICURIO_EVENTS_KAFKA_TOPIC",
    ):
        assert registry[key].startswith(REGISTRY_TOPIC_PREFIX), key
    assert registry["APICURIO_KAFKASQL_CONSUMER_GROUP_PREFIX"] == REGISTRY_GROUP_PREFIX


def test_the_acls_are_applied_before_any_application_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka-acls"]["command"] == ["python", "-m", "deploy.compose.kafka_acls"]

    def waits_for_acls(name: str, seen: frozenset[str] = frozenset()) -> bool:
        deps = services[name].get("depends_on") or {}
        if deps.get("kafka-acls", {}).get("condition") == "service_completed_successfully":
            return True
        return any(waits_for_acls(d, seen | {name}) for d in deps if d not in seen)

    # The JobManager and TaskManagers touch Kafka only once flink-submit (checked) has submitted the job.
    idle_until_submitted = {"flink-jobmanager", "flink-taskmanager"}
    for name in [*kafka_clients(compose), "schema-registry"]:
        if name not in {"kafka-acls", *idle_until_submitted}:
            assert waits_for_acls(name), f"{name} may start before the ACLs exist"


def test_the_registry_is_reachable_only_through_the_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    registry = services["schema-registry"]
    assert not registry.get("ports"), "Apicurio itself is published"
    assert registry["networks"] == ["registry-backend"]
    assert compose["networks"]["registry-backend"]["internal"] is True
    on_backend = {n for n, svc in services.items() if "registry-backend" in (svc.get("networks") or [])}
    assert on_backend == {"schema-registry", "registry-proxy", "kafka"}
    proxy = services["registry-proxy"]
    assert urlparse(proxy["environment"]["REGISTRY_UPSTREAM_URL"]).hostname == "schema-registry"
    assert proxy["command"] == ["python", "-m", "deploy.compose.registry_proxy"]
    for name, svc in services.items():
        url = env_of(svc).get("SCHEMA_REGISTRY_URL")
        if url is not None:
            parsed = urlparse(url)
            assert parsed.hostname == "registry-proxy" and parsed.password is None, f"{name}: {url}"


def test_only_the_init_job_holds_the_registry_writers_password(compose: dict[str, Any]) -> None:
    holders = {
        name
        for name, svc in compose["services"].items()
        if any("REGISTRY_WRITER_PASSWORD" in str(v) for v in env_of(svc).values())
    }
    assert holders == {"init", "registry-proxy"}
    proxy = compose["services"]["registry-proxy"]["environment"]
    init_script = " ".join(compose["services"]["init"]["command"])
    # The init job sends it as the proxy's writer, read from a netrc file (requests honours $NETRC),
    # written by the shell's printf builtin and unset before Python starts.
    assert f"machine registry-proxy login {proxy['REGISTRY_WRITER_USERNAME']} password" in init_script
    assert "export NETRC=" in init_script and "unset REGISTRY_WRITER_PASSWORD" in init_script
    assert init_script.index("unset REGISTRY_WRITER_PASSWORD") < init_script.index("exec python")


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    """Every password in a JAAS line anywhere in the file, and every secret-named variable, is a
    required reference to .env, never a value."""
    seen = 0
    for name, svc in compose["services"].items():
        for key, value in env_of(svc).items():
            for secret in JAAS_SECRET.findall(str(value)):
                seen += 1
                assert REQUIRED_VAR.fullmatch(secret), f"{name}: {key} holds a password in clear"
            if re.search(r"KEY|PASSWORD|SECRET|TOKEN", key) and value is not None:
                assert REQUIRED_VAR.fullmatch(str(value)), f"{name}: {key}={value!r}"
    assert seen >= 3  # the broker's two client listeners and its controller, the registry's storage
