"""Safety properties of both overlays: probes, resource requests and limits, pinned images, non-root pods,
the scoring NetworkPolicy, and no secret values in the manifests.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.conftest import OVERLAYS

WORKLOADS = ("Deployment", "StatefulSet", "Job")
# Variables that hold a secret: keys, passwords, tokens, and the console's analyst hashes (CONSOLE_USERS).
SECRET_NAME = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|CREDENTIAL|_USERS$", re.I)


def pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every workload, the FlinkDeployment's pod template included."""
    out = []
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in WORKLOADS:
            out.append((where, d["spec"]["template"]["spec"]))
        elif d["kind"] == "FlinkDeployment":
            out.append((where, d["spec"]["podTemplate"]["spec"]))
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_on_every_long_running_container(built: dict[str, list], overlay: str) -> None:
    for d in built[overlay]:
        if d["kind"] in ("Deployment", "StatefulSet"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert "readinessProbe" in c and "livenessProbe" in c, f"{d['metadata']['name']}/{c['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_requests_and_limits_everywhere(built: dict[str, list], overlay: str) -> None:
    for d in built[overlay]:
        if d["kind"] in WORKLOADS:
            for c in d["spec"]["template"]["spec"]["containers"]:
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(res.get(part, {})), (
                        f"{d['metadata']['name']}/{c['name']} {part}"
                    )
        elif d["kind"] == "FlinkDeployment":
            for role in ("jobManager", "taskManager"):
                assert {"cpu", "memory"} <= set(d["spec"][role]["resource"]), role
        elif d["kind"] == "KafkaNodePool":
            assert {"requests", "limits"} <= set(d["spec"]["resources"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(built: dict[str, list], overlay: str) -> None:
    images = [(w, c["image"]) for w, pod in pods(built[overlay]) for c in pod["containers"] if "image" in c]
    images += [
        (f"FlinkDeployment/{d['metadata']['name']}", d["spec"]["image"])
        for d in built[overlay]
        if d["kind"] == "FlinkDeployment"
    ]
    assert images
    for where, image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), f"{where}: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root(built: dict[str, list], overlay: str) -> None:
    for where, pod in pods(built[overlay]):
        pod_level = pod.get("securityContext", {}).get("runAsNonRoot")
        for c in pod["containers"]:
            ctx = c.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod_level) is True, f"{where}/{c['name']}"
            assert ctx.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_flink_job_and_prometheus_reach_scoring(built: dict[str, list], overlay: str) -> None:
    docs = built[overlay]
    scoring = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "scoring")
    scoring_labels = scoring["spec"]["template"]["metadata"]["labels"]
    flink_labels = next(d for d in docs if d["kind"] == "FlinkDeployment")["spec"]["podTemplate"]["metadata"][
        "labels"
    ]
    # The policies that let something in (the default deny selects every pod and allows nothing).
    policies = [
        p
        for p in docs
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"].get("matchLabels", {}).items() <= scoring_labels.items()
        and p["spec"].get("ingress")
    ]
    assert len(policies) == 1
    policy = policies[0]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            selector = peer["podSelector"]["matchLabels"]
            if "namespaceSelector" in peer:
                assert selector == {"app.kubernetes.io/name": "prometheus"}
            else:
                assert selector.items() <= flink_labels.items(), "ingress allowed from a non-Flink pod"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_in_manifests(built: dict[str, list], overlay: str) -> None:
    docs = built[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created out of band, not committed"
    for d in docs:
        if d["kind"] == "ConfigMap":
            assert not [k for k in d["data"] if SECRET_NAME.search(k)], d["metadata"]["name"]
    for where, pod in pods(docs):
        for c in pod["containers"]:
            for env in c.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (
                        f"{where}: {env['name']}"
                    )
    api_key_users = [
        w
        for w, pod in pods(docs)
        for c in pod["containers"]
        for e in c.get("env", [])
        if e["name"] == "SCORING_API_KEY"
    ]
    assert sorted(api_key_users) == ["Deployment/scoring", "FlinkDeployment/scoring-job"]
