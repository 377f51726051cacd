"""Offline fixtures for the deployment tests: the compose file, the kustomize-built overlays and the
vendored CRD schemas. Nothing here starts a process other than the kustomize build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")


def kustomize_command() -> list[str]:
    """A kustomize: $KUSTOMIZE, else `kustomize` on PATH, else the one built into kubectl."""
    if explicit := os.environ.get("KUSTOMIZE"):
        return [explicit, "build"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    pytest.fail(
        "no kustomize found: set KUSTOMIZE=/path/to/kustomize, or put kustomize or kubectl on PATH "
        "(`go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0` builds it from the Go module proxy)"
    )


def load_all(text: str) -> list[dict[str, Any]]:
    # libyaml's safe loader: the vendored CRDs are a megabyte, seconds for the pure-Python one.
    return [doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc]


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def built() -> dict[str, list[dict[str, Any]]]:
    """overlay name -> the manifests `kustomize build deploy/k8s/overlays/<name>` prints (built side by side)."""
    builds = {
        name: subprocess.Popen(
            [*kustomize_command(), str(DEPLOY / "k8s" / "overlays" / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in OVERLAYS
    }
    out = {}
    for name, proc in builds.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"kustomize build of overlay {name} failed:\n{stderr}"
        out[name] = load_all(stdout)
    return out


@pytest.fixture(scope="session")
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, for every CRD version kept in deploy/crds/."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DEPLOY / "crds").glob("*.yaml")):
        for crd in load_all(path.read_text()):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas
