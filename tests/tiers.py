"""The unit/integration split, taken from fixture definitions rather than fixture names.

A fixture that starts a process or trains a real model is declared with :func:`process_fixture`
instead of ``pytest.fixture``. Every test whose fixture closure reaches such a definition is marked
``integration``. Names are not enough: an offline module may define its own ``service`` or
``registry`` fixture (a fake), and the test using it must stay in the unit tier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

# The fixture functions (the undecorated ones pytest calls) that start processes or train models.
_PROCESS_FIXTURES: set[Callable[..., Any]] = set()


def process_fixture(*, scope: str = "function") -> Callable[[F], F]:
    """``pytest.fixture(scope=...)`` for a fixture that starts a process or trains a model: the
    tests that reach it, directly or through other fixtures, are in the integration tier."""

    def decorate(function: F) -> F:
        _PROCESS_FIXTURES.add(function)
        return pytest.fixture(scope=scope)(function)  # type: ignore[call-overload,no-any-return]

    return decorate


def reaches_a_process_fixture(item: pytest.Item) -> bool:
    """Whether the fixtures ``item`` will use (the closure pytest resolved for it, overrides
    applied) include a :func:`process_fixture` definition."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    for name in info.names_closure:
        definitions = info.name2fixturedefs.get(name, ())
        # The last definition is the one the test gets; an override that requests its own name
        # uses the one before it as well.
        for definition in reversed(definitions):
            if definition.func in _PROCESS_FIXTURES:
                return True
            if name not in definition.argnames:
                break
    return False


def _shares_setup_across_its_module(item: pytest.Item) -> bool:
    """Whether ``item`` uses a module-scoped fixture its own file defines: a file declares one because
    the setup is too slow to repeat per test (``tests/monitoring/test_warmup.py``'s replay, 5 s;
    ``tests/fraud_core/test_simulator.py``'s streams)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    module = item.nodeid.split("::")[0]
    return any(
        d.scope == "module" and d.baseid == module for defs in info.name2fixturedefs.values() for d in defs
    )


def _weight_rank(item: pytest.Item) -> int:
    if item.get_closest_marker("flink"):
        return 0
    if item.get_closest_marker("integration"):
        return 1
    return 2 if _shares_setup_across_its_module(item) else 3


def heaviest_tier_first(items: Sequence[pytest.Item]) -> list[pytest.Item]:
    """The files with a Flink test first, then the other integration files, then the unit files with
    a module fixture of their own, then the other unit files; collection order within each.
    ``--dist loadfile`` hands whole files to the workers in this order as they come free, so the
    long files start early on both workers and the many millisecond ones fill in at the end, instead
    of one worker finishing alone with the last long file (the heaviest-first rule of scheduling,
    with the tier as the weight: in the unit tier, the 10 s warm-up file last in line kept one worker
    busy 8 s after the other was done). Every worker computes the same order from the same
    collection, which xdist requires."""
    rank: dict[Path, int] = {}
    for item in items:
        rank[item.path] = min(rank.get(item.path, 3), _weight_rank(item))
    return sorted(items, key=lambda item: rank[item.path])  # stable: files stay whole and in order
