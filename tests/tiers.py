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


def _tier_rank(item: pytest.Item) -> int:
    if item.get_closest_marker("flink"):
        return 0
    return 1 if item.get_closest_marker("integration") else 2


def heaviest_tier_first(items: Sequence[pytest.Item]) -> list[pytest.Item]:
    """The files whose heaviest test runs a Flink job first, then the other integration files, then
    the unit files; collection order within each. ``--dist loadfile`` hands whole files to the
    workers in this order as they come free, so the minute-long files start early on both workers
    and the many millisecond ones fill in at the end, instead of one worker finishing alone with the
    last Flink files (the heaviest-first rule of scheduling, with the tier as the weight). Every
    worker computes the same order from the same collection, which xdist requires."""
    rank: dict[Path, int] = {}
    for item in items:
        rank[item.path] = min(rank.get(item.path, 2), _tier_rank(item))
    return sorted(items, key=lambda item: rank[item.path])  # stable: files stay whole and in order
