"""On a real PostgreSQL server, processes that create the same tables at once all succeed
(careledger/sql_schema.py): the API and the workers of a fresh stack do exactly that."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from careledger import migrations
from tests.support.races import RACE_TABLES, create_race_tables, open_api_tables_at, open_keystore_at, race
from tests.support.servers import TestStack


def test_concurrent_creators_all_succeed_on_postgresql(stack: TestStack) -> None:
    for _ in range(5):
        url = stack.fresh_pg_url()
        outcomes = race(create_race_tables, (url,), racers=6)
        assert [kind for kind, _ in outcomes] == ["ok"] * 6, outcomes
        engine = create_engine(url)
        assert sorted(inspect(engine).get_table_names()) == [f"race_t{i}" for i in range(RACE_TABLES)]
        engine.dispose()


def test_processes_starting_together_upgrade_one_postgresql_database(stack: TestStack) -> None:
    """The key store's and the API's Alembic histories (careledger/migrations.py) on one fresh
    PostgreSQL database, upgraded by 5 processes at once (the advisory lock takes them in turn)."""
    for round_ in range(3):
        url = stack.fresh_pg_url()
        for action, history in ((open_keystore_at, migrations.KEYSTORE), (open_api_tables_at, migrations.API)):
            outcomes = race(action, (url,), racers=5)
            assert outcomes == [("ok", migrations.head(history))] * 5, (round_, outcomes)
        tables = set(inspect(create_engine(url)).get_table_names())
        assert {"person_keys", "tombstones", "keystore_meta", "api_tokens", "audit_log", "webhook_subscriptions",
                "webhook_deliveries", "keystore_alembic_version", "api_alembic_version"} <= tables
