"""Parallel builds on SQLite: one shard file per worker, merged into the target at the end.

SQLite has one writer, so replay workers writing the same file take turns on its lock and only
their reading and decoding overlap.  Instead each worker builds its partitions into a shard of its
own (``<target>.shard<k>``, same schema), and :func:`merge_shards` copies the shards into the
empty target in one transaction, inside SQLite (``INSERT … SELECT`` over ``ATTACH``ed files).
All of a person's events are on one partition (and a job posting's on its employer's), so the
shards hold disjoint rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from projections.sql import tables as t
from projections.sql.engines import scratch_url

if TYPE_CHECKING:
    from projections.sql.store import SqlStore

MAX_SHARDS = 8  # SQLite attaches at most 10 databases by default
SQLITE_FILE_PREFIX = "sqlite:///"


def sqlite_file(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL, else None (in-memory, PostgreSQL, …)."""
    if not url.startswith(SQLITE_FILE_PREFIX) or "mode=memory" in url:
        return None
    path = url.removeprefix(SQLITE_FILE_PREFIX).split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def shard_url(url: str, k: int) -> str:
    """A shard is scratch (``engines.scratch_url``): it is removed whenever its build fails."""
    target = sqlite_file(url)
    if target is None:
        raise ValueError(f"{url!r} is not a file-backed SQLite store")
    return scratch_url(SQLITE_FILE_PREFIX + str(target.with_name(f"{target.name}.shard{k}")))


def remove_shard(url: str) -> None:
    path = sqlite_file(url)
    if path is None:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _columns(table: object, skip: tuple[str, ...] = ()) -> str:
    return ", ".join(f'"{c.name}"' for c in table.c if c.name not in skip)  # type: ignore[attr-defined]


def _copy_statements(shard: str) -> list[str]:
    """``INSERT … SELECT`` from the attached ``shard`` into main, table by table (a person's rows
    are all in one shard, so nothing conflicts).  Identifiers only, all from our own schema: no
    value is spliced into the SQL."""
    out = []
    for table in (t.ledger, t.alert_outbox):  # new sequence numbers in main, in the shard's order
        cols = _columns(table, skip=("seq",))
        out.append(f"INSERT INTO main.{table.name} ({cols}) SELECT {cols} FROM {shard}.{table.name} "  # noqa: S608
                   "ORDER BY seq")
    for table in COPIED[2:]:
        cols = _columns(table)
        out.append(f"INSERT INTO main.{table.name} ({cols}) SELECT {cols} FROM {shard}.{table.name}")  # noqa: S608
    cols = _columns(t.projection_offsets)
    out.append(f"INSERT INTO main.projection_offsets ({cols}) SELECT {cols} "  # noqa: S608
               f"FROM {shard}.projection_offsets WHERE partition >= 0")
    return out


COPIED = (t.ledger, t.alert_outbox, t.persons, t.needs, t.pending_reversals, t.alerts, t.warnings)
COPIED_NAMES = frozenset(table.name for table in COPIED)
MERGE_CACHE_KIB = 262_144  # the merge's page cache (the connection goes back to the pool with its own)


def merge_shards(store: SqlStore, shard_urls: list[str]) -> None:
    """Copy every shard's read models, outbox and positions into ``store`` (which must be empty
    for these partitions) in one transaction; the shards are left for the caller to remove.

    The copied tables' indexes are dropped first and created again after the copy, in the same
    transaction: building an index from all its rows at once is a sort, where inserting the rows
    into it one by one is a random B-tree write each (random event ids) - the merge of 1M events
    took a quarter of a two-worker build before (docs/performance.md)."""
    if len(shard_urls) > MAX_SHARDS:
        raise ValueError(f"at most {MAX_SHARDS} shards can be merged at once")
    raw = store.engine.raw_connection()
    cur = raw.cursor()
    cache = cur.execute("PRAGMA cache_size").fetchone()[0]
    attached: list[str] = []
    try:
        for k, url in enumerate(shard_urls):  # ATTACH is refused inside a transaction
            cur.execute(f"ATTACH DATABASE ? AS shard{k}", (str(sqlite_file(url)),))
            attached.append(f"shard{k}")
        cur.execute(f"PRAGMA cache_size=-{MERGE_CACHE_KIB}")
        cur.execute("BEGIN IMMEDIATE")
        try:
            indexes = [row for row in cur.execute(  # explicit ones only (those of PRIMARY KEY / UNIQUE stay)
                "SELECT name, sql, tbl_name FROM main.sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                "ORDER BY name").fetchall() if row[2] in COPIED_NAMES]
            for index, _sql, _table in indexes:
                cur.execute(f'DROP INDEX main."{index}"')  # a name from our own schema
            for name in attached:
                for sql in _copy_statements(name):
                    cur.execute(sql)
            for _index, sql, _table in indexes:
                cur.execute(sql)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        cur.execute(f"PRAGMA cache_size={int(cache)}")
        for name in attached:
            cur.execute(f"DETACH DATABASE {name}")
        raw.close()
