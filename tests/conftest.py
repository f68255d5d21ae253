"""Shared fixtures.  Unit tests need nothing; integration tests ask for the real servers.

Fixtures for integration tests (all real servers, started once per session, stopped at the end):
- ``stack``: the ``TestStack`` (Kafka broker, ClickHouse, PostgreSQL handles and base settings);
- ``kafka_settings``: a ``Settings`` with its own topic namespace (topics created), SQLite file and
  consumer group, for one test;
- ``pg_url`` / ``clickhouse_url``: a fresh, empty database on the PostgreSQL / ClickHouse server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from careledger.settings import Settings
from tests.support.servers import TestStack, start_test_stack

# Speed is measured by bench/, not by tests: no per-example deadline (Hypothesis's default 200 ms
# fails an example that a loaded 2-core machine - unit tests beside the integration tests - slows).
hypothesis_settings.register_profile("careledger", deadline=None)
hypothesis_settings.load_profile("careledger")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[TestStack]:
    home = Path(tempfile.mkdtemp(prefix="careledger-test-"))
    os.chmod(home, 0o755)
    test_stack = start_test_stack(home)
    try:
        yield test_stack
    finally:
        test_stack.stop()
        if not os.environ.get("CARELEDGER_KEEP_TEST_HOME"):
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def kafka_settings(stack: TestStack) -> Settings:
    return stack.fresh_settings()


@pytest.fixture
def pg_url(stack: TestStack) -> str:
    return stack.fresh_pg_url()


@pytest.fixture
def clickhouse_url(stack: TestStack) -> str:
    return stack.fresh_clickhouse_url()
