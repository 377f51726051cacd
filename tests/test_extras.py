"""Each deployable's extra in pyproject.toml installs every third-party package the deployable imports.

A deployable's closure is its own modules, every module of ours they reach (fraud_core and schemas, parent
packages included, imports inside functions too: grimp reads every import statement; `if TYPE_CHECKING:`
blocks are left out because they never run), and the third-party top-level names those modules import. A
name maps to the distributions that provide it (importlib.metadata.packages_distributions()); the extra
provides the base dependencies, the distributions it lists and everything those require, read from the
installed metadata of the dev environment. So a fraud_core module that imports pyflink, once the console
reaches it, fails the console's case here: the console's extra has no apache-flink.
"""

from __future__ import annotations

import copy
import re
import sys
import tomllib
from collections import defaultdict
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import grimp
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Our top-level packages: the deployables, what they stand on, and the tooling.
OURS: tuple[str, ...] = (
    "schemas", "fraud_core", "producers", "flink_jobs", "inference_service", "actions", "console", "monitoring",
    "bench", "faults", "backtest", "deploy"
)  # fmt: skip
# Each deployable and the extra it is installed with (docs/INTERFACES.md, "Install sets").
DEPLOYABLES = {
    "producers": "producer",
    "flink_jobs": "job",
    "inference_service": "service",
    "actions": "actions",
    "console": "console",
    "monitoring": "monitor",
}
# What each image runs (docker-compose.yml's commands and deploy/k8s): it must install the extras these need.
IMAGES = {
    "apps.Dockerfile": (
        "actions",
        "console",
        "producers",
        "deploy.compose.registry_proxy",
        "deploy.compose.kafka_acls",
        "deploy.local.bootstrap",
    ),
    "service.Dockerfile": ("inference_service", "monitoring"),
    "flink.Dockerfile": ("flink_jobs",),
}


@cache
def _providers() -> dict[str, frozenset[str]]:
    return {
        top: frozenset(canonicalize_name(d) for d in dists) for top, dists in packages_distributions().items()
    }


@cache
def _graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))  # faults is not an installed package
    try:
        return grimp.build_graph(*OURS, include_external_packages=True, exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(ROOT))


def third_party_imports(graph: grimp.ImportGraph, starts: tuple[str, ...]) -> dict[str, set[str]]:
    """Third-party top-level names reached from the modules under `starts`, each with the modules of ours
    that import it (so a failure names where to look)."""
    todo = [m for m in graph.modules if any(m == s or m.startswith(s + ".") for s in starts)]
    seen = set(todo)
    found: dict[str, set[str]] = defaultdict(set)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        reached = {
            ".".join(parts[:i]) for i in range(1, len(parts))
        } | graph.find_modules_directly_imported_by(module)
        for other in reached:
            top = other.split(".")[0]
            if top in OURS:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
            elif top not in sys.stdlib_module_names:
                found[top].add(module)
    return found


def _installed_closure(requirements: list[str]) -> set[str]:
    """The canonical names of the distributions pip installs for `requirements`, our own extras expanded."""
    names: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    visited: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in visited:
            continue
        visited.add(key)
        if name == canonicalize_name(PROJECT["name"]):
            todo += [Requirement(r) for extra in req.extras for r in PROJECT["optional-dependencies"][extra]]
            continue
        names.add(name)
        try:
            declared = requires(name) or []
        except PackageNotFoundError:
            continue  # not installed in this environment: it brings nothing we can see
        for line in declared:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in {"", *req.extras}):
                todo.append(dep)
    return names


@cache
def installed_by(extras: tuple[str, ...]) -> frozenset[str]:
    optional = PROJECT["optional-dependencies"]
    return frozenset(_installed_closure(PROJECT["dependencies"] + [r for e in extras for r in optional[e]]))


def missing(
    graph: grimp.ImportGraph, starts: tuple[str, ...], extras: tuple[str, ...]
) -> dict[str, set[str]]:
    """Each imported name no distribution installed by `extras` provides, with its importers."""
    providers = _providers()
    installed = installed_by(extras)
    return {
        top: importers
        for top, importers in third_party_imports(graph, starts).items()
        if not providers.get(top, frozenset()) & installed
    }


@pytest.mark.parametrize(("package", "extra"), sorted(DEPLOYABLES.items()))
def test_each_deployable_extra_installs_what_it_imports(package: str, extra: str) -> None:
    assert missing(_graph(), (package,), (extra,)) == {}, f"add these to [{extra}] (name: importers)"


def test_the_base_dependencies_install_what_schemas_imports() -> None:
    assert missing(_graph(), ("schemas",), ()) == {}


def test_a_deployable_reaching_a_pyflink_module_of_fraud_core_is_caught() -> None:
    graph = copy.deepcopy(_graph())
    assert missing(graph, ("console",), ("console",)) == {}
    graph.add_import(
        importer="console.app",
        imported="fraud_core.flink_cluster",
        line_number=1,
        line_contents="import fraud_core.flink_cluster",
    )
    assert missing(graph, ("console",), ("console",)) == {"pyflink": {"fraud_core.flink_cluster"}}


def test_a_package_missing_from_an_extra_is_caught() -> None:
    installed = installed_by(("service",))
    assert "scikit-learn" in installed and "apache-flink" not in installed
    assert "sklearn" in missing(_graph(), ("inference_service",), ("monitor",))


def _dockerfile_extras(name: str) -> tuple[str, ...]:
    text = (ROOT / "deploy" / "docker" / name).read_text()
    installs = re.findall(r"pip install [^\n]*?'\.\[([a-z,]+)\]'", text)
    assert len(installs) == 1, f"{name}: expected one install of '.[extras]', found {installs}"
    return tuple(installs[0].split(","))


@pytest.mark.parametrize(("dockerfile", "runs"), sorted(IMAGES.items()))
def test_each_image_installs_what_its_commands_import(dockerfile: str, runs: tuple[str, ...]) -> None:
    extras = _dockerfile_extras(dockerfile)
    assert "dev" not in extras
    assert missing(_graph(), runs, extras) == {}


def test_the_scoring_image_carries_no_flink() -> None:
    installed = installed_by(_dockerfile_extras("service.Dockerfile"))
    assert not installed & {"apache-flink", "apache-flink-libraries", "apache-beam", "pemja"}


def test_dev_installs_every_extra() -> None:
    dev = installed_by(("dev",))
    for extra in PROJECT["optional-dependencies"]:
        assert installed_by((extra,)) <= dev, extra
