"""The schema registry behind its proxy on Kubernetes (issue 24 §5), in both kustomize-built overlays:
every client's SCHEMA_REGISTRY_URL leads to the proxy, Apicurio admits no one else, only the bootstrap
Job holds the writer's credentials (the proxy holds the password it checks them against), and the
proxy runs as hardened as the other applications. Offline: the built manifests only; the proxy itself
is tested in test_registry_proxy.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy.compose.registry_proxy import ProxySettings
from tests.deploy.conftest import OVERLAYS
from tests.deploy.test_k8s_safety import pods
from tests.deploy.test_k8s_security import pod_labels, policies, selects

PROXY = "Deployment/registry-proxy"
APICURIO = "Deployment/schema-registry"
WRITER_SECRET = "registry-writer"
# Every workload that talks to the registry: the bootstrap registers, the others look schemas up.
CLIENTS = {
    "FlinkDeployment/scoring-job",
    "Deployment/consumers",
    "Deployment/console",
    "Deployment/drift-monitor",
    "Job/fraud-bootstrap",
}


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, Any]:
    """A container's variables as the kubelet sets them: ConfigMaps from ``envFrom``, then ``env``
    (whose entries win); a literal maps to its string, a reference to its ``valueFrom``."""
    out: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"extend this check for {source}"
        out.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for e in container.get("env", []):
        out[e["name"]] = e["value"] if "value" in e else e["valueFrom"]
    return out


def service_for(docs: list[dict[str, Any]], workload: str) -> dict[str, Any]:
    """The one Service whose selector picks ``workload``'s pods."""
    labels = pod_labels(docs)[workload]
    (svc,) = [
        d
        for d in docs
        if d["kind"] == "Service"
        and d["spec"].get("selector")
        and selects({"matchLabels": d["spec"]["selector"]}, labels)
    ]
    return svc


def container_port(pod: dict[str, Any], target: int | str) -> int:
    """The container port a Service's ``targetPort`` (number or name) reaches in ``pod``."""
    ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    return int(ports[target]) if isinstance(target, str) else target


def reaches(docs: list[dict[str, Any]], url: str, workload: str) -> bool:
    """Whether ``url`` names the Service of ``workload`` on a port that leads to one of its containers."""
    parts = urlsplit(url)
    svc = service_for(docs, workload)
    pod = dict(pods(docs))[workload]
    declared = {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    return parts.hostname == svc["metadata"]["name"] and any(
        p["port"] == parts.port and container_port(pod, p["targetPort"]) in declared
        for p in svc["spec"]["ports"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_registry_client_goes_through_the_proxy(built: dict[str, list], overlay: str) -> None:
    docs = built[overlay]
    urls = {
        where: env["SCHEMA_REGISTRY_URL"]
        for where, pod in pods(docs)
        for c in pod["containers"]
        if "SCHEMA_REGISTRY_URL" in (env := environment(docs, c))
    }
    assert set(urls) == CLIENTS
    for where, url in urls.items():
        assert reaches(docs, url, PROXY), f"{where}: SCHEMA_REGISTRY_URL={url} is not the proxy's Service"
        assert urlsplit(url).path == "/apis/ccompat/v7", f"{where}: {url}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_proxy_is_pointed_at_apicurio(built: dict[str, list], overlay: str) -> None:
    """No variable of any other workload names Apicurio's Service: a client configured past the proxy
    would only be stopped by the network, and the proxy must name it to be of any use."""
    docs = built[overlay]
    apicurio = service_for(docs, APICURIO)["metadata"]["name"]
    naming = {
        (where, name)
        for where, pod in pods(docs)
        for c in pod["containers"]
        for name, value in environment(docs, c).items()
        if isinstance(value, str) and urlsplit(value).hostname == apicurio
    }
    assert naming == {(PROXY, "REGISTRY_UPSTREAM_URL")}
    proxy_env = environment(docs, dict(pods(docs))[PROXY]["containers"][0])
    assert reaches(docs, proxy_env["REGISTRY_UPSTREAM_URL"], APICURIO)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_apicurio_admits_only_the_proxy(built: dict[str, list], overlay: str) -> None:
    docs = built[overlay]
    labels = pod_labels(docs)
    selecting = [p for p in policies(docs) if selects(p["spec"]["podSelector"], labels[APICURIO])]
    assert any("Ingress" in p["spec"]["policyTypes"] for p in selecting)
    rules = [rule for p in selecting for rule in p["spec"].get("ingress", [])]
    assert rules, "no rule admits the proxy"
    for rule in rules:
        # A rule without `from` admits every source; one without `ports` every port.
        assert rule.get("from"), f"an ingress rule to Apicurio admits everyone: {rule}"
        assert rule.get("ports") == [{"protocol": "TCP", "port": 8080}], rule
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, f"a peer from another namespace or address: {peer}"
            admitted = {w for w, lab in labels.items() if selects(peer["podSelector"], lab)}
            assert admitted == {PROXY}, f"Apicurio admits {sorted(admitted)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_bootstrap_job_holds_the_writer_credentials(built: dict[str, list], overlay: str) -> None:
    """The netrc goes to the bootstrap Job alone, as a file; the password to the proxy alone, which
    checks it. Nothing else refers to the Secret, in any form."""
    docs = built[overlay]
    uses: dict[str, set[str]] = {}
    for where, pod in pods(docs):
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            for source in c.get("envFrom", []):
                assert source.get("secretRef", {}).get("name") != WRITER_SECRET, f"{where}: all its keys"
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef", {})
                if ref.get("name") == WRITER_SECRET:
                    uses.setdefault(where, set()).add(f"env:{ref['key']}")
                assert e["name"] != "REGISTRY_WRITER_PASSWORD" or where == PROXY, where
        for v in pod.get("volumes", []):
            sources = [v["secret"]] if "secret" in v else []
            sources += [s["secret"] for s in v.get("projected", {}).get("sources", []) if "secret" in s]
            for s in sources:
                if s.get("secretName", s.get("name")) == WRITER_SECRET:
                    assert s.get("items"), f"{where}: every key of {WRITER_SECRET} mounted"
                    uses.setdefault(where, set()).update(f"file:{i['key']}" for i in s["items"])
    assert uses == {"Job/fraud-bootstrap": {"file:netrc"}, PROXY: {"env:password"}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_bootstrap_job_reads_the_netrc_where_it_is_mounted(built: dict[str, list], overlay: str) -> None:
    pod = dict(pods(built[overlay]))["Job/fraud-bootstrap"]
    (container,) = pod["containers"]
    netrc = environment(built[overlay], container)["NETRC"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == WRITER_SECRET]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    (item,) = volume["secret"]["items"]
    assert netrc == f"{mount['mountPath']}/{item['path']}"
    assert mount.get("readOnly") is True
    # Secret files belong to root: the job's user reads it through the group (fsGroup) or not at all.
    mode = volume["secret"].get("defaultMode", 0o644)
    ctx = pod["securityContext"]
    assert mode & 0o007 == 0, f"the netrc is readable by every user (mode {mode:o})"
    assert mode & 0o040 and ctx.get("fsGroup") is not None, f"user {ctx['runAsUser']} cannot read the netrc"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_proxy_runs_the_compose_module_hardened_like_the_other_apps(
    built: dict[str, list], overlay: str, compose: dict[str, Any]
) -> None:
    docs = built[overlay]
    deployment = one(docs, "Deployment", "registry-proxy")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    consumers = one(docs, "Deployment", "consumers")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == consumers["image"], "not the fraud-apps image of this overlay"
    assert container["command"] == compose["services"]["registry-proxy"]["command"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][part]), part
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe].get("httpGet") or container[probe]["tcpSocket"]
        assert container_port(pod, check["port"]) in ports.values(), probe
    env = environment(docs, container)
    assert env["REGISTRY_WRITER_PASSWORD"] == {"secretKeyRef": {"name": WRITER_SECRET, "key": "password"}}
    literals = {k: v for k, v in env.items() if isinstance(v, str)}
    settings = ProxySettings(**literals, REGISTRY_WRITER_PASSWORD="a-test-password-of-16+")
    # The default host is loopback, which no other pod could reach.
    assert settings.PROXY_HOST == "0.0.0.0"
    # The Service sends its traffic to the port the proxy listens on.
    targets = {container_port(pod, p["targetPort"]) for p in service_for(docs, PROXY)["spec"]["ports"]}
    assert targets == {settings.PROXY_PORT}
