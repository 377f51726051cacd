"""The structure read from the imports: pyproject.toml's import-linter contracts hold.

Deployables (producers, flink_jobs, inference_service, actions, console, monitoring) import only
fraud_core and schemas; tooling (bench, faults, backtest, deploy) may import them; no import cycle
between the modules of any package. grimp reads every import statement, including those inside
functions, so a lazy import cannot hide an arrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grimp
import importlinter.api  # noqa: F401  (configures import-linter, as its command line does)
import pytest
from importlinter.application import use_cases

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _lint(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    monkeypatch.chdir(PYPROJECT.parent)
    monkeypatch.syspath_prepend(str(PYPROJECT.parent))
    passed = use_cases.lint_imports(config_filename=str(PYPROJECT), no_logo=True, cache_dir=None)
    return passed, capsys.readouterr().out


def test_the_import_contracts_hold(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    passed, report = _lint(monkeypatch, capsys)
    assert passed, report


@pytest.mark.parametrize(
    ("importer", "imported", "broken"),
    [
        ("console.app", "actions.consumer", "console is not allowed to import actions"),
        ("flink_jobs.scoring_job", "deploy.local.cluster", "flink_jobs is not allowed to import deploy"),
        ("fraud_core.decision", "inference_service.model_registry", "fraud_core is not allowed to import"),
        ("monitoring.monitor", "producers.produce", "monitoring is not allowed to import producers"),
    ],
)
def test_a_forbidden_arrow_breaks_the_contracts(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    importer: str,
    imported: str,
    broken: str,
) -> None:
    build = use_cases._build_graph

    def with_arrow(*args: Any, **kwargs: Any) -> grimp.ImportGraph:
        graph = build(*args, **kwargs)
        graph.add_import(
            importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}"
        )
        return graph

    monkeypatch.setattr(use_cases, "_build_graph", with_arrow)
    passed, report = _lint(monkeypatch, capsys)
    assert not passed
    assert broken in report


def test_a_cycle_inside_a_package_breaks_the_contracts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build = use_cases._build_graph

    def with_cycle(*args: Any, **kwargs: Any) -> grimp.ImportGraph:
        graph = build(*args, **kwargs)
        graph.add_import(
            importer="fraud_core.cli", imported="fraud_core.decision", line_number=1, line_contents=""
        )
        graph.add_import(
            importer="fraud_core.decision", imported="fraud_core.cli", line_number=1, line_contents=""
        )
        return graph

    monkeypatch.setattr(use_cases, "_build_graph", with_cycle)
    passed, report = _lint(monkeypatch, capsys)
    assert not passed
    assert "No cycles are allowed in fraud_core" in report
