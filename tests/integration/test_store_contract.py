"""The store contract (tests/support/store_contract.py) on the real PostgreSQL and ClickHouse
servers of the test stack - the same suite SQLite and the example projection run in tests/unit."""

from __future__ import annotations

import pytest

from processors.domain.rules_config import default_rules
from projections.clickhouse.store import ClickHouseStore
from projections.sql.store import SqlStore
from tests.support.servers import TestStack
from tests.support.store_contract import CountsContract

pytestmark = pytest.mark.integration


class TestPostgresStore(CountsContract):
    @pytest.fixture(autouse=True)
    def _server(self, stack: TestStack) -> None:
        self.stack = stack

    def make_store(self) -> SqlStore:
        store = SqlStore(self.stack.fresh_pg_url(), default_rules())
        store.migrate()
        return store


class TestClickHouseStore(CountsContract):
    events = 400  # every store of the suite is a new database on the server: keep them small

    @pytest.fixture(autouse=True)
    def _server(self, stack: TestStack) -> None:
        self.stack = stack

    def make_store(self) -> ClickHouseStore:
        store = ClickHouseStore(self.stack.fresh_clickhouse_url())
        store.migrate()
        return store
