"""Copying the key store's and the read API's tables between databases (SQLite or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, func, insert, select, text
from sqlalchemy.engine import Engine

from careledger.settings import Settings
from infra.backups.layout import ROW_CHUNK, private_file


def sqlite_file(path: Path) -> Engine:
    with private_file(path):
        pass
    return create_engine(f"sqlite:///{path}")


def copy_tables(source: Engine, target: Engine, metadata: MetaData, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows of ``tables`` from ``source`` into ``target`` (tables created there if missing), read
    in one transaction so that they are consistent with each other; returns rows per table.
    A table the source does not have yet (the API never ran) is copied as empty."""
    from sqlalchemy import inspect

    present = set(inspect(source).get_table_names())
    metadata.create_all(target, tables=[metadata.tables[name] for name in tables])
    copied: dict[str, int] = {}
    with source.connect() as read, target.begin() as write:
        if source.dialect.name == "postgresql":  # one snapshot for every table, as SQLite gives
            read = read.execution_options(isolation_level="REPEATABLE READ")
        with read.begin():
            for name in tables:
                table = metadata.tables[name]
                copied[name] = 0
                if name not in present:
                    continue
                result = read.execution_options(stream_results=True).execute(select(table))
                while rows := result.fetchmany(ROW_CHUNK):
                    write.execute(insert(table), [dict(row._mapping) for row in rows])
                    copied[name] += len(rows)
            if target.dialect.name == "postgresql":
                _advance_sequences(write, [metadata.tables[name] for name in tables])
    return copied


def _advance_sequences(conn: Any, tables: list[Any]) -> None:
    """Rows copied with their ids leave PostgreSQL's serial sequences behind: move them past."""
    for table in tables:
        for column in table.primary_key.columns:
            if column.autoincrement is True:
                # names from our own table definitions, never from input
                sql = (f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608
                       f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)")
                conn.execute(text(sql))


def row_count(engine: Engine, metadata: MetaData, name: str) -> int:
    from sqlalchemy import inspect

    if name not in inspect(engine).get_table_names():
        return 0
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one())


def keystore_tables() -> tuple[MetaData, tuple[str, ...]]:
    from producers import keystore

    return keystore.metadata, ("person_keys", "tombstones", "keystore_meta")


def api_tables() -> tuple[MetaData, tuple[str, ...]]:
    from projections.api import auth, subscriptions

    merged = MetaData()
    for table in (*auth.metadata.tables.values(), *subscriptions.metadata.tables.values()):
        table.to_metadata(merged)
    return merged, ("api_tokens", "audit_log", "webhook_subscriptions", "webhook_deliveries")


def keystore_engine(settings: Settings) -> Engine:
    from producers.keystore import KeyStore

    return KeyStore._make_engine(settings.keystore_db_url)


def api_engine(settings: Settings) -> Engine:
    from projections.api.subscriptions import sql_engine

    return sql_engine(settings.sql_url)
