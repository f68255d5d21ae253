"""Copying the key store's and the read API's tables between databases (SQLite or PostgreSQL)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, func, insert, inspect, select, text
from sqlalchemy.engine import Engine

from careledger.migrations import KEYSTORE, current, head
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
    if name not in inspect(engine).get_table_names():
        return 0
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar_one())


def keystore_tables() -> tuple[MetaData, tuple[str, ...]]:
    from producers import keystore

    return keystore.metadata, ("person_keys", "tombstones", "keystore_meta")


def api_tables() -> tuple[MetaData, tuple[str, ...]]:
    from projections import webhook_store as subscriptions
    from projections.api import auth

    merged = MetaData()
    for table in (*auth.metadata.tables.values(), *subscriptions.metadata.tables.values()):
        table.to_metadata(merged)
    return merged, ("api_tokens", "audit_log", "audit_subjects", "audit_archives", "webhook_subscriptions",
                    "webhook_deliveries")


def keystore_engine(settings: Settings, *, upgrade: bool = True) -> Engine:
    """The key store's database, by default at the current schema: one of an older release is
    upgraded first (which needs the master key: tombstones become unlinkable digests of it)."""
    from producers.keystore import KeyStore

    engine = KeyStore._make_engine(settings.keystore_db_url)
    if upgrade and current(engine, KEYSTORE) != head(KEYSTORE):
        engine.dispose()
        engine = KeyStore.from_settings(settings).engine  # runs the migrations
    return engine


def upgraded_keystore_copy(path: Path, work: Path, master_key: bytes) -> Engine:
    """A backup's key store (``path``) at the current schema: itself if it is, else an upgraded
    copy in ``work`` (a backup of an older release, whose tombstones still link to persons)."""
    from producers.keystore import KeyStore, tombstones

    engine = create_engine(f"sqlite:///{path}")
    columns = {c["name"] for c in inspect(engine).get_columns(tombstones.name)}
    if "person_digest" in columns:
        return engine
    engine.dispose()
    copy = work / path.name
    with private_file(copy):
        pass
    shutil.copyfile(path, copy)
    return KeyStore(f"sqlite:///{copy}", master_key).engine


def api_engine(settings: Settings) -> Engine:
    """The read API's tables at the current schema (upgraded first if an older release made them)."""
    from projections.api_migrations import upgrade
    from projections.webhook_store import sql_engine

    engine = sql_engine(settings.sql_url)
    upgrade(engine)
    return engine
