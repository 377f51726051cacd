"""The kustomize-built dev and prod overlays: valid against the Kubernetes API schemas (kubernetes-validate,
strict) and, for custom resources, against the operators' CRD schemas kept in deploy/crds/; consistent with
fraud_core/topics.py, the settings classes and the Grafana dashboard. Offline.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

import jsonschema
import pytest
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from flink_jobs.settings import JobSettings
from fraud_core.topics import TOPICS
from tests.deploy.conftest import DEPLOY, OVERLAYS

K8S_VERSION = "1.32.0"
K8S_SCHEMAS = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"  # kubernetes-validate's strict set
# Container (or FlinkDeployment) -> settings class whose fields its environment must be.
SETTINGS = {
    ("Deployment", "scoring"): "inference_service.core.config:Settings",
    ("Deployment", "consumers"): "actions.settings:ConsumerSettings",
    ("Deployment", "drift-monitor"): "monitoring.settings:MonitorSettings",
    ("Deployment", "console"): "console.settings:ConsoleSettings",
    ("Job", "fraud-bootstrap"): "fraud_core.settings:ConnectionSettings",
    ("FlinkDeployment", "scoring-job"): "flink_jobs.settings:JobSettings",
    ("Deployment", "registry-proxy"): "deploy.compose.registry_proxy:ProxySettings",
}
IMAGE_VARS = {"ENABLE_BUILT_IN_PLUGINS"}  # read by the Flink image's entrypoint
# Read by a library, not by a settings class: requests takes the registry writer's netrc from $NETRC.
LIBRARY_VARS = {("Job", "fraud-bootstrap"): {"NETRC"}}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the structural schema does not declare: what `kubectl apply --validate=strict` refuses."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                found += unknown_fields(item, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("additionalProperties"):
                found.append(f"{path}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


@functools.cache
def k8s_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """The check of `kubernetes_validate.validate(doc, K8S_VERSION, strict=True)`, with each schema read
    once: the library reads its megabyte of shared definitions again for every document."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1 -> apps-v1
    schema = schema_contents(f"{K8S_SCHEMAS}/{kind.lower()}-{group_version}.json", K8S_VERSION)
    return jsonschema.Draft202012Validator(schema, registry=k8s_definitions() @ Registry())


@functools.cache
def k8s_definitions() -> Resource[Any]:
    return Resource.from_contents(schema_contents(f"{K8S_SCHEMAS}/_definitions.json", K8S_VERSION))


def test_the_cached_validator_refuses_what_kubernetes_refuses() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]},
    }
    assert not list(k8s_validator("v1", "Service").iter_errors(service))
    service["spec"]["ports"][0]["port"] = "eighty"
    service["spec"]["portz"] = []
    errors = sorted(e.message for e in k8s_validator("v1", "Service").iter_errors(service))
    assert any("'eighty' is not of type 'integer'" in m for m in errors), errors
    assert any("'portz'" in m for m in errors), errors  # strict: unknown fields are refused


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_validate_against_the_kubernetes_api(
    built: dict[str, list], crds: dict, overlay: str
) -> None:
    problems = []
    for doc in built[overlay]:
        if (doc["apiVersion"], doc["kind"]) in crds:
            continue
        for error in k8s_validator(doc["apiVersion"], doc["kind"]).iter_errors(doc):
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_the_vendored_crds(
    built: dict[str, list], crds: dict, overlay: str
) -> None:
    problems = []
    custom = [
        d
        for d in built[overlay]
        if "." in d["apiVersion"].split("/")[0]
        and d["kind"]
        not in (
            "Role",
            "RoleBinding",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Job",
        )
    ]
    assert {d["kind"] for d in custom} >= {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "FlinkDeployment",
        "PodMonitor",
        "PrometheusRule",
    }
    for doc in custom:
        key = (doc["apiVersion"], doc["kind"])
        assert key in crds, f"no CRD schema in deploy/crds/ for {key}"
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for err in jsonschema.Draft7Validator(crds[key]).iter_errors(doc):
            problems.append(f"{where}: {err.message} at {list(err.path)}")
        problems += [
            f"{where}: unknown field {f}"
            for f in unknown_fields(doc["spec"], crds[key]["properties"]["spec"])
        ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_match_fraud_core(built: dict[str, list], overlay: str) -> None:
    topics = {t["metadata"]["name"]: t for t in by_kind(built[overlay], "KafkaTopic")}
    assert set(topics) == {t.name for t in TOPICS}
    cluster = by_kind(built[overlay], "Kafka")[0]["metadata"]["name"]
    for spec in TOPICS:
        topic = topics[spec.name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert topic["spec"]["partitions"] == spec.partitions
        assert int(topic["spec"]["config"]["retention.ms"]) == spec.retention_ms


def test_prod_replicates_three_ways_with_two_in_sync(built: dict[str, list]) -> None:
    prod = built["prod"]
    assert (
        sum(p["spec"]["replicas"] for p in by_kind(prod, "KafkaNodePool") if "broker" in p["spec"]["roles"])
        == 3
    )
    config = by_kind(prod, "Kafka")[0]["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2 and config["transaction.state.log.min.isr"] == 2
    assert config["default.replication.factor"] == 3 and config["offsets.topic.replication.factor"] == 3
    for topic in by_kind(prod, "KafkaTopic"):
        assert topic["spec"]["replicas"] == 3
        assert int(topic["spec"]["config"]["min.insync.replicas"]) == 2
    kafka = by_kind(built["dev"], "Kafka")[0]["spec"]["kafka"]["config"]
    assert (
        kafka["auto.create.topics.enable"] is False and kafka["transaction.state.log.replication.factor"] == 1
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flink_job_settings_agree_with_the_deployment(built: dict[str, list], overlay: str) -> None:
    flink = one(built[overlay], "FlinkDeployment", "scoring-job")
    spec = flink["spec"]
    env = {e["name"]: e.get("value") for e in spec["podTemplate"]["spec"]["containers"][0]["env"]}
    assert spec["job"]["upgradeMode"] in ("savepoint", "last-state")
    assert spec["flinkConfiguration"]["high-availability.type"] == "kubernetes"
    assert int(env["JOB_PARALLELISM"]) == spec["job"]["parallelism"]
    assert env["CHECKPOINT_DIR"] == spec["flinkConfiguration"]["execution.checkpointing.dir"]
    # The labels source, and the late-label delay the model was trained with (the default).
    assert env["LABELS_TOPIC"] == "payments.labels"
    assert int(env["LABEL_DELAY_MS"]) == JobSettings.model_fields["LABEL_DELAY_MS"].default
    assert spec["flinkConfiguration"]["execution.checkpointing.dir"].startswith(
        ("s3://", "file:///flink-data")
    )
    if spec["flinkConfiguration"]["execution.checkpointing.dir"].startswith("file://"):
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec["podTemplate"]["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims and all(
            any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == c for d in built[overlay])
            for c in claims
        )
    args = spec["job"]["args"]
    assert args[args.index("-py") + 1] == "/opt/flink/usrlib/flink_jobs/scoring_job.py"
    assert args[args.index("--delivery") + 1] in ("at-least-once", "exactly-once")
    assert spec["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert spec["flinkVersion"] == "v2_2"
    assert {"dev": 1, "prod": 8}[overlay] == spec["job"]["parallelism"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("target", sorted(SETTINGS), ids=lambda t: f"{t[0]}-{t[1]}")
def test_every_variable_is_a_settings_field(
    built: dict[str, list], overlay: str, target: tuple[str, str]
) -> None:
    docs = built[overlay]
    doc = one(docs, *target)
    pod = (
        doc["spec"]["podTemplate"]["spec"]
        if target[0] == "FlinkDeployment"
        else doc["spec"]["template"]["spec"]
    )
    names = set()
    for container in pod["containers"]:
        names |= {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            names |= set(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    module, _, cls = SETTINGS[target].partition(":")
    fields = set(getattr(importlib.import_module(module), cls).model_fields)
    unknown = names - fields - IMAGE_VARS - LIBRARY_VARS.get(target, set())
    assert not unknown, f"{target}: {sorted(unknown)} are not fields of {cls}"


def test_grafana_dashboard_configmap_is_the_compose_dashboard() -> None:
    compose_copy = DEPLOY / "grafana" / "dashboards" / "pipeline.json"
    k8s_copy = DEPLOY / "k8s" / "base" / "grafana" / "pipeline.json"
    assert k8s_copy.read_bytes() == compose_copy.read_bytes(), f"run: cp {compose_copy} {k8s_copy}"


def test_dashboard_metrics_are_documented() -> None:
    import json
    import re

    readme = (DEPLOY / "README.md").read_text()
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "pipeline.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    names = {
        re.sub(r"_(bucket|count|sum)$", "", n)
        for n in re.findall(r"\b((?:flink|pipeline|scoring)_\w+)", exprs)
    }
    missing = [n for n in sorted(names) if f"`{n}`" not in readme]
    assert not missing, f"deploy/README.md does not list {missing}"
