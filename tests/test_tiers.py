"""The integration marker follows the fixture definition a test gets (tests/tiers.py), not the
fixture's name: checked on a throw-away test tree, in-process."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from tests.tiers import process_fixture, reaches_a_process_fixture

@process_fixture(scope="session")
def service():
    return "a process"

@pytest.fixture
def client(service):
    return service

def pytest_collection_modifyitems(items):
    for item in items:
        if reaches_a_process_fixture(item):
            item.add_marker(pytest.mark.integration)
"""


def test_the_marker_follows_the_fixture_definition_not_its_name(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    integration: starts a process\n")
    pytester.makepyfile(
        test_real="def test_direct(service): pass\ndef test_through_another_fixture(client): pass\n",
        test_fake=(
            "import pytest\n"
            "@pytest.fixture\n"
            "def service():\n"
            "    return 'a fake'\n"
            "def test_own_fake(service): pass\n"
            "@pytest.mark.parametrize('service', ['a value'])\n"
            "def test_a_parameter_named_like_it(service): pass\n"
        ),
        test_wrapping=(
            "import pytest\n"
            "@pytest.fixture\n"
            "def service(service):\n"
            "    return service + ', wrapped'\n"
            "def test_an_override_that_uses_it(service): pass\n"
        ),
    )
    quiet = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:schemathesis", "-p", "no:anyio"]
    result = pytester.runpytest("--collect-only", "-q", "-m", "integration", *quiet)
    selected = {line.split("::")[1] for line in result.outlines if "::" in line}
    assert selected == {"test_direct", "test_through_another_fixture", "test_an_override_that_uses_it"}


ORDER_CONFTEST = """
from tests.tiers import heaviest_tier_first

def pytest_collection_modifyitems(items):
    items[:] = heaviest_tier_first(items)
"""


def test_workers_get_flink_files_first_then_integration_then_unit_each_file_whole(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(ORDER_CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    integration: i\n    flink: f\n")
    pytester.makepyfile(
        test_a_unit="def test_one(): pass\ndef test_two(): pass\n",
        test_b_integration="import pytest\npytestmark = pytest.mark.integration\ndef test_one(): pass\n",
        test_c_mixed=(
            "import pytest\n"
            "def test_unit_first(): pass\n"
            "@pytest.mark.flink\n"
            "def test_job(): pass\n"
            "def test_unit_last(): pass\n"
        ),
        test_d_unit="def test_one(): pass\n",
        test_e_flink="import pytest\n@pytest.mark.flink\ndef test_job(): pass\n",
        test_f_unit_shared_setup=(
            "import pytest\n"
            "@pytest.fixture(scope='module')\n"
            "def replay(): return 1\n"
            "def test_one(replay): pass\n"
        ),
    )
    quiet = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:schemathesis", "-p", "no:anyio"]
    result = pytester.runpytest("--collect-only", "-q", *quiet)
    assert [line for line in result.outlines if "::" in line] == [
        "test_c_mixed.py::test_unit_first",  # a file with one Flink test is a Flink file, kept whole
        "test_c_mixed.py::test_job",
        "test_c_mixed.py::test_unit_last",
        "test_e_flink.py::test_job",
        "test_b_integration.py::test_one",
        "test_f_unit_shared_setup.py::test_one",  # a module fixture of its own: slow setup, goes first
        "test_a_unit.py::test_one",
        "test_a_unit.py::test_two",
        "test_d_unit.py::test_one",
    ]
