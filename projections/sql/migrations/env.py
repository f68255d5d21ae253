"""Alembic env: always online, on the connection handed over by ``SqlStore.migrate()``.

There is no alembic.ini: ``projections.sql.migrate.alembic_config`` builds the Config in code.
To add a revision during development::

    .venv/bin/python -m projections.sql.migrate revision -m "what changed" URL
"""

from __future__ import annotations

from alembic import context

from projections.sql.tables import VERSION_TABLE, metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # pragma: no cover - offline SQL generation is not used
    raise SystemExit("offline migrations are not supported; run SqlStore.migrate()")
run_migrations_online()
