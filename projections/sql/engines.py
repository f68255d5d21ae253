"""SQLAlchemy engines for the SQL stores: the one place that knows how careledger talks to SQLite
and PostgreSQL.

SQLite: WAL (readers never block the writer), ``synchronous=NORMAL`` (a commit is durable once the
WAL is checkpointed; a power cut may lose the last batches, which are re-read from Kafka because
their positions are lost with them), a checkpoint every 50,000 WAL pages (~200 MB) rather than
SQLite's 1,000, and ``BEGIN IMMEDIATE`` for writers so a batch's reads and writes share one
transaction and the write lock is taken up front (no deadlock between two writers that both read
first).  Scratch stores (:func:`scratch_url`) trade durability for speed.

PostgreSQL: psycopg 3, ``pool_pre_ping`` so a connection the server dropped is replaced rather
than failing a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

IMMEDIATE = {"sqlite_begin": "immediate"}  # execution options of a writer's connection
SCRATCH_QUERY = "careledger_scratch=1"


def scratch_url(url: str) -> str:
    """A SQLite store that is thrown away whenever the work writing it fails (a replay's shard):
    the rollback journal in memory and no fsync (``journal_mode=MEMORY``, ``synchronous=OFF``: a
    process killed in the middle of a batch, or a power cut, may leave the file corrupt - which is
    why only a store that is removed after any failure may be opened so), and a 64 MiB page cache.
    In process, 8-10 % less wall time per event than the durable store (256 MiB: 12 %, but 170 MB
    more per worker and no faster end to end; docs/performance.md)."""
    return url + ("&" if "?" in url else "?") + SCRATCH_QUERY


def _without_scratch(url: str) -> tuple[str, bool]:
    base, _, query = url.partition("?")
    params = [p for p in query.split("&") if p] if query else []
    kept = [p for p in params if p != SCRATCH_QUERY]
    return (base + ("?" + "&".join(kept) if kept else "")), len(kept) != len(params)


def is_memory_sqlite(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url


def normalise_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``sqlite:///...`` or ``postgresql+psycopg://...`` (ValueError otherwise)."""
    url, scratch = _without_scratch(normalise_url(url))
    if url.startswith("sqlite"):
        return _sqlite_engine(url, echo, scratch)
    if url.startswith("postgresql"):
        return create_engine(url, echo=echo, pool_pre_ping=True)
    raise ValueError(f"unsupported SQL URL {url!r}: use sqlite:/// or postgresql+psycopg://")


def _sqlite_engine(url: str, echo: bool, scratch: bool = False) -> Engine:
    memory = is_memory_sqlite(url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}, "echo": echo}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        if scratch:  # see scratch_url; the rollback journal in memory still undoes a failed batch
            cur.execute("PRAGMA journal_mode=MEMORY")
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB
        else:
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # a checkpoint (copy the WAL into the file, two fsyncs) every 50,000 pages (≤ 200 MB of WAL)
            # rather than every 10,000: a page that several batches dirty is copied once, and the fsyncs
            # are fewer - 4-8 % less wall time per event at 1M in process (docs/performance.md); 100,000: no better
            cur.execute("PRAGMA wal_autocheckpoint=50000")
            cur.execute("PRAGMA journal_size_limit=67108864")
            cur.execute("PRAGMA cache_size=-16384")  # 16 MiB per connection (64 MiB: +50 MB RSS, no faster)
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "immediate" else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine, lock_key: int | None = None) -> Iterator[Connection]:
    """One writer transaction: ``BEGIN IMMEDIATE`` on SQLite (the write lock up front); on PostgreSQL
    an advisory lock on ``lock_key`` serialises writers of the same positions (e.g. two workers
    during a rebalance).  Committed when the block exits without an error."""
    with engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
        if lock_key is not None and engine.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(lock_key)))
        yield conn
