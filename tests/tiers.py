"""The unit/integration split, taken from fixture definitions rather than fixture names.

A fixture that starts a process or trains a real model is declared with :func:`process_fixture`
instead of ``pytest.fixture``. Every test whose fixture closure reaches such a definition is marked
``integration``. Names are not enough: an offline module may define its own ``service`` or
``registry`` fixture (a fake), and the test using it must stay in the unit tier.
"""

from __future__ import annotations

from collections.abc import Callable
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
