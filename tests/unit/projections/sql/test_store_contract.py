"""The store contract (tests/support/store_contract.py) on SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.domain.rules_config import default_rules
from projections.sql.store import SqlStore
from tests.support.store_contract import CountsContract


class TestSqliteStore(CountsContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory, self.opened = tmp_path, 0

    def make_store(self) -> SqlStore:
        self.opened += 1
        store = SqlStore(f"sqlite:///{self.directory / f's{self.opened}.sqlite3'}", default_rules())
        store.migrate()
        return store
