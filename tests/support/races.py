"""Start several processes at the same moment (a barrier) to exercise check-then-act races."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine

from careledger import migrations
from careledger.sql_schema import create_tables
from producers.keystore import KeyStore
from projections.api.auth import TokenStore

RACE_TABLES = 6


def _run_after_barrier(action: Callable[..., Any], args: tuple[Any, ...], barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        results.put(("ok", action(*args)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(("error", f"{type(exc).__name__}: {exc}"[:300]))


def race(action: Callable[..., Any], args: tuple[Any, ...], racers: int) -> list[tuple[str, Any]]:
    """Run ``action(*args)`` in ``racers`` forked processes released together; their outcomes,
    ``("ok", result)`` or ``("error", "Type: message")``."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(racers), context.Queue()
    procs = [context.Process(target=_run_after_barrier, args=(action, args, barrier, results))
             for _ in range(racers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return outcomes


def race_tables_metadata() -> MetaData:
    metadata = MetaData()
    for i in range(RACE_TABLES):
        Table(f"race_t{i}", metadata, Column("id", Integer, primary_key=True), Column("v", String(10)))
    return metadata


def create_race_tables(url: str) -> None:
    """What each racer does: create the tables of :func:`race_tables_metadata` on ``url``."""
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    try:
        create_tables(engine, race_tables_metadata())
    finally:
        engine.dispose()


def open_keystore_at(url: str) -> str | None:
    """What a worker does first on a fresh home: open the key store (its migrations run), make a key;
    returns the revision the database is at afterwards."""
    store = KeyStore(url, b"race-master-key")
    try:
        store.get_or_create(["p1"])
        return migrations.current(store.engine, migrations.KEYSTORE)
    finally:
        store.close()


def open_api_tables_at(url: str) -> str | None:
    """What the API does first: upgrade its tables (tokens, audit log, webhooks); the revision after."""
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    try:
        TokenStore(url, engine=engine).migrate()
        return migrations.current(engine, migrations.API)
    finally:
        engine.dispose()
