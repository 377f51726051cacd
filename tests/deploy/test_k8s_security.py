"""Security properties of both Kubernetes overlays (issue 16), one test per property: default-deny
network policies with an allow rule per flow, the Flink REST API never published, read-only root
filesystems, Kafka over TLS with SCRAM and ACL'd users in prod, Redis ACL users, secrets from
Secrets. Offline: the kustomize-built manifests only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy.redis_users import password_variable, start_script
from monitoring.settings import MonitorSettings
from tests.deploy.conftest import OVERLAYS
from tests.deploy.test_k8s_safety import pods

# Pod labels of each party (what the NetworkPolicies select on).
JOB = {"app.kubernetes.io/name": "scoring-job"}
CONSUMERS = {"app.kubernetes.io/name": "consumers"}
BOOTSTRAP = {"app.kubernetes.io/name": "fraud-bootstrap"}
CONSOLE = {"app.kubernetes.io/name": "console"}
DRIFT = {"app.kubernetes.io/name": "drift-monitor"}
SCORING = {"app.kubernetes.io/name": "scoring"}
REDIS = {"app.kubernetes.io/name": "redis"}
REGISTRY = {"app.kubernetes.io/name": "schema-registry"}
REGISTRY_PROXY = {"app.kubernetes.io/name": "registry-proxy"}
KAFKA = {"strimzi.io/cluster": "fraud", "strimzi.io/kind": "Kafka"}

# (source, destination, port): what the pipeline needs, and a sample of what it must not do.
FLOWS = [
    (JOB, KAFKA, 9093),
    (JOB, REDIS, 6379),
    (JOB, REGISTRY_PROXY, 8080),
    (JOB, SCORING, 8000),
    (JOB, JOB, 6123),
    (CONSUMERS, KAFKA, 9093),
    (CONSUMERS, REDIS, 6379),
    (CONSUMERS, REGISTRY_PROXY, 8080),
    (BOOTSTRAP, KAFKA, 9093),
    (BOOTSTRAP, REGISTRY_PROXY, 8080),
    (CONSOLE, KAFKA, 9093),
    (CONSOLE, REDIS, 6379),
    (CONSOLE, REGISTRY_PROXY, 8080),
    (DRIFT, KAFKA, 9093),
    (DRIFT, REGISTRY_PROXY, 8080),
    (REGISTRY_PROXY, REGISTRY, 8080),
]
FORBIDDEN = [
    (CONSUMERS, SCORING, 8000),
    (BOOTSTRAP, REDIS, 6379),
    (SCORING, REDIS, 6379),
    (SCORING, KAFKA, 9093),
    (SCORING, REGISTRY, 8080),
    (REGISTRY, REDIS, 6379),
    (CONSUMERS, JOB, 8081),
    (CONSOLE, SCORING, 8000),
    (CONSOLE, JOB, 8081),
    (CONSOLE, CONSUMERS, 9102),
    (DRIFT, REDIS, 6379),
    (DRIFT, SCORING, 8000),
    # Apicurio authenticates no one: every client goes through the proxy, none straight to it.
    (JOB, REGISTRY, 8080),
    (CONSUMERS, REGISTRY, 8080),
    (BOOTSTRAP, REGISTRY, 8080),
    (CONSOLE, REGISTRY, 8080),
    (DRIFT, REGISTRY, 8080),
    (REGISTRY_PROXY, REDIS, 6379),
    (REGISTRY_PROXY, SCORING, 8000),
]
KAFKA_CLIENTS = {  # workload -> (pod labels, KafkaUser)
    ("FlinkDeployment", "scoring-job"): (JOB, "fraud-job"),
    ("Deployment", "consumers"): (CONSUMERS, "fraud-consumers"),
    ("Job", "fraud-bootstrap"): (BOOTSTRAP, "fraud-bootstrap"),
    ("Deployment", "console"): (CONSOLE, "fraud-console"),
    ("Deployment", "drift-monitor"): (DRIFT, "fraud-drift-monitor"),
}
# KafkaUser -> {(resource type, name, pattern): operations}: least privilege, per application.
ACLS = {
    "fraud-job": {
        ("topic", "payments.initiated", "literal"): {"Read", "Describe"},
        ("group", "fraud-scoring-job", "literal"): {"Read"},
        # The labels source and its group (flink_jobs/scoring_job.py labels_source_ddl).
        ("topic", "payments.labels", "literal"): {"Read", "Describe"},
        ("group", "fraud-scoring-job-labels", "literal"): {"Read"},
        # Its outputs, written, and read back by a start without a checkpoint (flink_jobs/resume.py).
        ("topic", "payments.flagged", "literal"): {"Read", "Write", "Describe"},
        ("topic", "payments.approved", "literal"): {"Read", "Write", "Describe"},
        ("topic", "payments.dlq", "literal"): {"Read", "Write", "Describe"},
        ("group", "resume-scan-", "prefix"): {"Read"},
        ("transactionalId", "fraud-scoring", "prefix"): {"Write", "Describe"},
    },
    "fraud-consumers": {
        ("topic", "payments.flagged", "literal"): {"Read", "Describe"},
        ("topic", "payments.approved", "literal"): {"Read", "Describe"},
        ("group", "fraud-actions", "literal"): {"Read"},
        ("topic", "payments.actions", "literal"): {"Write", "Describe"},
        ("topic", "payments.dlq", "literal"): {"Write", "Describe"},
    },
    "fraud-bootstrap": {("topic", "payments.", "prefix"): {"Create", "Describe", "DescribeConfigs"}},
    # Writes verdicts (labels) and their audit (actions); consumes nothing.
    "fraud-console": {
        ("topic", "payments.labels", "literal"): {"Write", "Describe"},
        ("topic", "payments.actions", "literal"): {"Write", "Describe"},
    },
    "fraud-drift-monitor": {
        ("topic", "payments.flagged", "literal"): {"Read", "Describe"},
        ("topic", "payments.approved", "literal"): {"Read", "Describe"},
        ("group", MonitorSettings.model_fields["GROUP_ID"].default, "literal"): {"Read"},
    },
}


def policies(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "NetworkPolicy"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert "matchExpressions" not in selector, "extend this check for matchExpressions"
    return selector.get("matchLabels", {}).items() <= labels.items()


def port_open(rule: dict[str, Any], port: int) -> bool:
    return "ports" not in rule or any(p.get("port") == port for p in rule["ports"])


def peer_is(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    """A peer in this namespace (no namespaceSelector, no ipBlock) that selects ``labels``."""
    return "podSelector" in peer and "namespaceSelector" not in peer and selects(peer["podSelector"], labels)


def egress_allowed(docs: list[dict[str, Any]], src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    return any(
        selects(p["spec"]["podSelector"], src)
        and any(
            port_open(rule, port) and "to" in rule and any(peer_is(peer, dst) for peer in rule["to"])
            for rule in p["spec"].get("egress", [])
        )
        for p in policies(docs)
    )


def ingress_allowed(docs: list[dict[str, Any]], src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    if dst == KAFKA:  # Strimzi writes the brokers' policy from the listeners' networkPolicyPeers
        kafka = next(d for d in docs if d["kind"] == "Kafka")
        return any(
            listener["port"] == port
            and any(peer_is(peer, src) for peer in listener.get("networkPolicyPeers", []))
            for listener in kafka["spec"]["kafka"]["listeners"]
        )
    return any(
        selects(p["spec"]["podSelector"], dst)
        and any(
            port_open(rule, port) and any(peer_is(peer, src) for peer in rule.get("from", []))
            for rule in p["spec"].get("ingress", [])
        )
        for p in policies(docs)
    )


def kafka_port(docs: list[dict[str, Any]]) -> int:
    kafka = next(d for d in docs if d["kind"] == "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    return int(listener["port"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny_for_every_pod(built: dict[str, list], overlay: str) -> None:
    deny = [
        p
        for p in policies(built[overlay])
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("src", "dst", "port"), FLOWS, ids=lambda v: str(v))
def test_each_flow_of_the_pipeline_is_allowed(
    built: dict[str, list], overlay: str, src: dict[str, str], dst: dict[str, str], port: int
) -> None:
    docs = built[overlay]
    if dst == KAFKA:
        port = kafka_port(docs)
    assert egress_allowed(docs, src, dst, port), f"no egress rule {src} -> {dst}:{port}"
    assert ingress_allowed(docs, src, dst, port), f"no ingress rule {src} -> {dst}:{port}"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(("src", "dst", "port"), FORBIDDEN, ids=lambda v: str(v))
def test_flows_the_pipeline_does_not_need_are_denied(
    built: dict[str, list], overlay: str, src: dict[str, str], dst: dict[str, str], port: int
) -> None:
    docs = built[overlay]
    if dst == KAFKA:
        port = kafka_port(docs)
    assert not (egress_allowed(docs, src, dst, port) and ingress_allowed(docs, src, dst, port))


def pod_labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Where -> the labels of its pods: every workload's pod template, and Strimzi's Kafka pods."""
    out = {}
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            out[where] = d["spec"]["template"]["metadata"]["labels"]
        elif d["kind"] == "FlinkDeployment":
            out[where] = d["spec"]["podTemplate"]["metadata"]["labels"]
        elif d["kind"] == "Kafka":
            out[where] = KAFKA
    return out


def prometheus_may_scrape(docs: list[dict[str, Any]], dst: dict[str, str], port: int) -> bool:
    """An ingress rule admits Prometheus (namespace `monitoring`) to ``dst`` pods on ``port``."""
    return any(
        p["spec"]["podSelector"] != {}
        and selects(p["spec"]["podSelector"], dst)
        and any(
            port_open(rule, port)
            and any(
                peer.get("namespaceSelector", {}).get("matchLabels")
                == {"kubernetes.io/metadata.name": "monitoring"}
                and peer.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "prometheus"}
                for peer in rule.get("from", [])
            )
            for rule in p["spec"].get("ingress", [])
        )
        for p in policies(docs)
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_has_an_allow_policy_of_its_own(built: dict[str, list], overlay: str) -> None:
    """Default-deny plus DNS leaves a pod that no policy names unable to do its work: each flow
    it needs must be written down (the catch-all policies, empty podSelector, do not count)."""
    docs = built[overlay]
    named = [p for p in policies(docs) if p["spec"]["podSelector"] != {}]
    labels = pod_labels(docs)
    assert {"Deployment/console", "Deployment/drift-monitor", "Kafka/fraud"} <= set(labels)
    unselected = [
        w for w, lab in labels.items() if not any(selects(p["spec"]["podSelector"], lab) for p in named)
    ]
    assert not unselected, f"no NetworkPolicy allows anything for {unselected}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_may_scrape_every_pod_monitor(built: dict[str, list], overlay: str) -> None:
    docs = built[overlay]
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    labels, workloads = pod_labels(docs), dict(pods(docs))
    assert {m["metadata"]["name"] for m in monitors} >= {"console", "drift-monitor"}
    for monitor in monitors:
        selector = monitor["spec"]["selector"]
        targets = [workloads[w] for w, lab in labels.items() if w in workloads and selects(selector, lab)]
        assert targets, f"PodMonitor/{monitor['metadata']['name']} selects no pod"
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            for pod in targets:
                ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
                port = ports[endpoint["port"]]
                assert prometheus_may_scrape(docs, selector["matchLabels"], port), (
                    f"PodMonitor/{monitor['metadata']['name']}: Prometheus may not reach port {port}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_is_reached_only_through_the_ingress_controller_and_by_prometheus(
    built: dict[str, list], overlay: str
) -> None:
    docs = built[overlay]
    rules = [
        rule
        for p in policies(docs)
        if p["spec"]["podSelector"] != {} and selects(p["spec"]["podSelector"], CONSOLE)
        for rule in p["spec"].get("ingress", [])
    ]
    peers = set()
    for rule in rules:
        assert rule["ports"] == [{"protocol": "TCP", "port": 8090}]
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector", "podSelector"}, peer
            peers.add(
                (
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
                )
            )
    assert peers == {("ingress-nginx", "ingress-nginx"), ("monitoring", "prometheus")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_console_health_strip_reads_prometheus_which_its_egress_allows(
    built: dict[str, list], overlay: str
) -> None:
    """The strip's endpoints are Prometheus federation only (the job, scoring service and consumers
    admit no console), reachable through the console's egress rule to monitoring/prometheus."""
    docs = built[overlay]
    (console,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "console"]
    env = {e["name"]: e.get("value") for e in console["spec"]["template"]["spec"]["containers"][0]["env"]}
    urls = [urlsplit(u) for u in env["HEALTH_METRICS_URLS"].split(",")]
    assert urls
    for url in urls:
        assert (url.hostname, url.port, url.path) == ("prometheus-operated.monitoring.svc", 9090, "/federate")
        assert "+" not in url.query, "a query string reads + as a space"
    peers = [
        (peer, rule)
        for p in policies(docs)
        if p["spec"]["podSelector"] != {} and selects(p["spec"]["podSelector"], CONSOLE)
        for rule in p["spec"].get("egress", [])
        for peer in rule.get("to", [])
    ]
    assert any(
        peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "monitoring"}
        and peer.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "prometheus"}
        and port_open(rule, 9090)
        for peer, rule in peers
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_may_resolve_names(built: dict[str, list], overlay: str) -> None:
    dns = [
        p
        for p in policies(built[overlay])
        if p["spec"]["podSelector"] == {}
        and any(port_open(r, 53) and "ports" in r for r in p["spec"].get("egress", []))
    ]
    assert dns


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flink_rest_api_is_never_published(built: dict[str, list], overlay: str) -> None:
    docs = built[overlay]
    flink = next(d for d in docs if d["kind"] == "FlinkDeployment")
    assert "ingress" not in flink["spec"], "the operator would create an Ingress for the Flink UI/REST API"
    assert flink["spec"]["flinkConfiguration"]["kubernetes.rest-service.exposed.type"] == "ClusterIP"
    assert not [d for d in docs if d["kind"] in ("Ingress", "Route", "HTTPRoute", "Gateway")]
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_read_only_root_filesystem_on_every_container(built: dict[str, list], overlay: str) -> None:
    docs = built[overlay]
    for where, pod in pods(docs):
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            assert c.get("securityContext", {}).get("readOnlyRootFilesystem") is True, f"{where}/{c['name']}"
    kafka = next(d for d in docs if d["kind"] == "Kafka")["spec"]
    strimzi = [
        kafka["kafka"]["template"]["kafkaContainer"],
        kafka["entityOperator"]["template"]["topicOperatorContainer"],
        kafka["entityOperator"]["template"]["userOperatorContainer"],
        kafka["kafkaExporter"]["template"]["container"],
    ]
    assert all(c["securityContext"]["readOnlyRootFilesystem"] is True for c in strimzi)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flink_pods_write_only_to_empty_dirs(built: dict[str, list], overlay: str) -> None:
    flink = next(d for d in built[overlay] if d["kind"] == "FlinkDeployment")["spec"]["podTemplate"]["spec"]
    volumes = {v["name"]: v for v in flink["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in flink["containers"][0]["volumeMounts"]}
    for path in ("/tmp", "/opt/flink/log"):
        assert "emptyDir" in volumes[mounts[path]], path


def test_prod_kafka_uses_tls_with_scram_and_acls(built: dict[str, list]) -> None:
    kafka = next(d for d in built["prod"] if d["kind"] == "Kafka")["spec"]
    listeners = kafka["kafka"]["listeners"]
    assert listeners and all(
        lst["tls"] is True and lst["authentication"]["type"] == "scram-sha-512" for lst in listeners
    )
    assert kafka["kafka"]["authorization"]["type"] == "simple"
    assert "userOperator" in kafka["entityOperator"]


def test_prod_kafka_users_have_least_privilege_acls(built: dict[str, list]) -> None:
    users = {d["metadata"]["name"]: d["spec"] for d in built["prod"] if d["kind"] == "KafkaUser"}
    assert set(users) == set(ACLS)
    for name, spec in users.items():
        assert spec["authentication"]["type"] == "scram-sha-512"
        granted = {
            (a["resource"]["type"], a["resource"]["name"], a["resource"].get("patternType", "literal")): set(
                a["operations"]
            )
            for a in spec["authorization"]["acls"]
            if a.get("type", "allow") == "allow"
        }
        assert granted == ACLS[name], name


def test_prod_apps_take_kafka_credentials_from_strimzi_secrets(built: dict[str, list]) -> None:
    docs = built["prod"]
    connections = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fraud-connections")
    )
    assert connections["data"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert connections["data"]["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert connections["data"]["KAFKA_BOOTSTRAP_SERVERS"].endswith(":9093")
    ca_file = connections["data"]["KAFKA_SSL_CA_FILE"]
    workloads = {(w.split("/")[0], w.split("/")[1]): pod for w, pod in pods(docs)}
    for key, (_labels, user) in KAFKA_CLIENTS.items():
        pod = workloads[key]
        container = pod["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["KAFKA_SASL_USERNAME"]["value"] == user, key
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}, (
            key
        )
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert ca_file.startswith(mounts["kafka-ca"] + "/"), key
        assert volumes["kafka-ca"]["secret"]["secretName"] == "fraud-cluster-ca-cert", key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_has_an_acl_user_per_application_with_passwords_from_a_secret(
    built: dict[str, list], overlay: str
) -> None:
    docs = built[overlay]
    workloads = {w: pod for w, pod in pods(docs)}
    redis = workloads["StatefulSet/redis"]["containers"][0]
    users = {
        "FlinkDeployment/scoring-job": "fraud-job",
        "Deployment/consumers": "fraud-consumers",
        "Deployment/console": "fraud-console",
    }
    # The kubelet expands $(VAR) in args, so the script's command substitutions are escaped ($$(); no
    # password variable is referenced for expansion into the command line.
    assert redis["args"] == ["sh", "-c", start_script(list(users.values())).replace("$(", "$$(")]
    assert not any(f"$({password_variable(u)})" in arg for arg in redis["args"] for u in users.values())
    redis_env = {e["name"]: e for e in redis["env"]}
    for where, user in users.items():
        assert redis_env[password_variable(user)]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-passwords",
            "key": user,
        }
        env = {e["name"]: e for e in workloads[where]["containers"][0]["env"]}
        assert env["REDIS_USERNAME"]["value"] == user, where
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-passwords", "key": user}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_admin_key_is_the_scoring_service_s_alone(built: dict[str, list], overlay: str) -> None:
    holders = {
        w: e["valueFrom"]["secretKeyRef"]
        for w, pod in pods(built[overlay])
        for c in pod["containers"]
        for e in c.get("env", [])
        if e["name"] == "ADMIN_API_KEY"
    }
    assert holders == {"Deployment/scoring": {"name": "scoring-admin-key", "key": "admin-key"}}


def _rules(docs: list[dict[str, Any]], role: str) -> dict[tuple[str, str], set[str]]:
    found = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == role)
    return {
        (group, resource): set(rule["verbs"])
        for rule in found["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def _bound(docs: list[dict[str, Any]], role: str) -> set[str]:
    return {
        s["name"]
        for d in docs
        if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == role
        for s in d["subjects"]
        if s["kind"] == "ServiceAccount"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flink_accounts_hold_only_what_native_kubernetes_mode_needs(
    built: dict[str, list], overlay: str
) -> None:
    docs = built[overlay]
    jobmanager = _rules(docs, "flink")
    assert jobmanager == {
        ("", "pods"): {"get", "list", "watch", "create", "delete"},  # the TaskManager pods
        ("", "configmaps"): {"get", "list", "watch", "create", "update", "patch", "delete"},  # HA
        ("apps", "deployments"): {"get"},  # owner of the TaskManager pods
        ("apps", "deployments/finalizers"): {"update"},
    }
    # TaskManagers run Python on untrusted input: read-only ConfigMaps (the HA leader), nothing else.
    assert _rules(docs, "flink-taskmanager") == {("", "configmaps"): {"get", "list", "watch"}}
    assert _bound(docs, "flink") == {"flink"} and _bound(docs, "flink-taskmanager") == {"flink-taskmanager"}
    flink = next(d for d in docs if d["kind"] == "FlinkDeployment")
    assert flink["spec"]["serviceAccount"] == "flink"
    assert (
        flink["spec"]["flinkConfiguration"]["kubernetes.taskmanager.service-account"] == "flink-taskmanager"
    )
    for d in docs:  # no other Role or ClusterRole anywhere
        assert d["kind"] not in ("ClusterRole", "ClusterRoleBinding"), d["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_other_pod_mounts_a_service_account_token(built: dict[str, list], overlay: str) -> None:
    for d in built[overlay]:
        if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"):
            spec = d["spec"]["template"]["spec"] if d["kind"] != "CronJob" else d["spec"]["jobTemplate"]
            assert spec.get("automountServiceAccountToken") is False, f"{d['kind']}/{d['metadata']['name']}"
