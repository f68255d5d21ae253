"""On a real PostgreSQL server, processes that create the same tables at once all succeed
(careledger/sql_schema.py): the API and the workers of a fresh stack do exactly that."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from tests.support.races import RACE_TABLES, create_race_tables, race
from tests.support.servers import TestStack


def test_concurrent_creators_all_succeed_on_postgresql(stack: TestStack) -> None:
    for _ in range(5):
        url = stack.fresh_pg_url()
        outcomes = race(create_race_tables, (url,), racers=6)
        assert [kind for kind, _ in outcomes] == ["ok"] * 6, outcomes
        engine = create_engine(url)
        assert sorted(inspect(engine).get_table_names()) == [f"race_t{i}" for i in range(RACE_TABLES)]
        engine.dispose()
