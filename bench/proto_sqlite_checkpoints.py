"""Prototype, not product code: what SQLite's checkpoints cost the applier, and two ways to pay less.

Applies N simulator events through the projection runtime into a fresh SQLite store in one process,
in batches as the live worker forms them, once per variant, and prints CPU (all threads) and wall
µs per event, how long commits took and how many of them checkpointed, and how large the store
became and its persons table (docs/performance.md):

* ``pages=N``: the writer checkpoints automatically every N WAL pages (the product: 50,000);
* ``background=K``: automatic checkpoints off; a thread with its own connection runs
  ``wal_checkpoint(PASSIVE)`` after every commit, and every K-th batch waits for it before its
  transaction begins, so the WAL can restart from its beginning;
* ``coalesced=K``: automatic checkpoints off; after every K-th commit the thread copies the K
  batches' pages (a page several batches dirtied, once), and before the transaction of the batch
  after the next one a pass in the foreground copies what came since, so the WAL restarts.

    .venv/bin/python bench/proto_sqlite_checkpoints.py --events 1000000 --variants pages=10000 pages=50000 background=4
    .venv/bin/python bench/proto_sqlite_checkpoints.py --events 1000000 --variants pages=50000 coalesced=6
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine.default import DefaultDialect  # noqa: E402

from bench.proto_person_cache import raw_records  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from processors.runtime.heap import settle_after_start  # noqa: E402
from projections.sql.store import SqlStore  # noqa: E402
from projections.sql.writer import SqlWriter  # noqa: E402
from tests.support.runtime import runtime_for  # noqa: E402


class BackgroundCheckpoints:
    """PASSIVE checkpoints in a thread after each commit; every ``every``-th batch waits for one."""

    def __init__(self, path: str, every: int, coalesce: bool = False) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.every = every
        self.coalesce = coalesce
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.pending: concurrent.futures.Future[Any] | None = None
        self.commits = 0
        self.restarts = 0
        self.waited = 0.0  # seconds the applying thread spent in before_begin

    def _pass(self) -> tuple[int, int, int]:
        return self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # type: ignore[no-any-return]

    def after_commit(self) -> None:
        self.commits += 1
        if self.coalesce:
            if self.commits % self.every == 0:
                self.pending = self.pool.submit(self._pass)
        elif self.pending is None or self.pending.done():
            self.pending = self.pool.submit(self._pass)

    def before_begin(self) -> None:
        if self.coalesce:
            if self.pending is None or self.commits % self.every != 1:
                return
        elif self.pending is None or self.commits % self.every:
            return
        started = time.perf_counter()
        _busy, log, done = self.pending.result()
        if log != done:  # the pass began before the last commit: finish here
            _busy, log, done = self._pass()
        self.restarts += log == done
        self.waited += time.perf_counter() - started


def run(raws: list[Any], batch: int, variant: str) -> str:
    kind, _, value = variant.partition("=")
    path = f"{tempfile.mkdtemp(prefix='careledger-checkpoints-')}/p.sqlite3"
    store = SqlStore(f"sqlite:///{path}", default_rules())
    store.migrate()
    pages = int(value) if kind == "pages" else 0

    @event.listens_for(store.engine, "connect")
    def _checkpoints(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={pages}")

    store.engine.dispose()
    background = (BackgroundCheckpoints(path, int(value), coalesce=kind == "coalesced")
                  if kind in ("background", "coalesced") else None)
    commits: list[float] = []
    plain_commit, plain_transaction = DefaultDialect.do_commit, SqlWriter.transaction

    def timed_commit(self: Any, conn: Any) -> None:
        started = time.perf_counter()
        plain_commit(self, conn)
        commits.append(time.perf_counter() - started)

    @contextmanager
    def transaction(self: SqlWriter) -> Iterator[Any]:
        if background is not None:
            background.before_begin()
        with plain_transaction(self) as uow:
            yield uow
        if background is not None:
            background.after_commit()

    DefaultDialect.do_commit = timed_commit  # type: ignore[method-assign]
    SqlWriter.transaction = transaction  # type: ignore[method-assign]
    try:
        runtime = runtime_for(store)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(raws), batch):
            runtime.apply(raws[i:i + batch])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        DefaultDialect.do_commit = plain_commit  # type: ignore[method-assign]
        SqlWriter.transaction = plain_transaction  # type: ignore[method-assign]
        store.close()
    size_mib, persons_mib = _sizes(path)
    shutil.rmtree(Path(path).parent, ignore_errors=True)
    batches = [c for c in commits if c > 0.001]  # the batches' commits, not the stores' small ones
    median = statistics.median(batches)
    slow = [c for c in batches if c > 3 * median]
    n = len(raws)
    extra = (f"; WAL restarted {background.restarts} times; {background.waited:.1f} s waited for (or ran) the "
             f"passes before a transaction" if background is not None else "")
    return (f"{variant:<16} {cpu / n * 1e6:6.1f} µs CPU {wall / n * 1e6:6.1f} µs wall per event; commits "
            f"{sum(batches):.1f} s (median {median * 1e3:.0f} ms), {len(slow)} of {len(batches)} over 3x the median "
            f"(checkpoints): {sum(slow):.1f} s{extra}; store {size_mib:,.0f} MiB, of it persons {persons_mib:,.0f}")


def _sizes(path: str) -> tuple[float, float]:
    """The closed store's file and its ``persons`` table (with its index), in MiB."""
    with closing(sqlite3.connect(path)) as db:
        persons = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name IN ('persons', 'ix_persons_status_town')"
                             ).fetchone()[0] or 0
    return Path(path).stat().st_size / 2**20, persons / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=3650, help="events per batch (the live worker's average)")
    parser.add_argument("--variants", nargs="+", default=["pages=10000", "pages=50000", "background=4"])
    args = parser.parse_args()
    raws = raw_records(args.events)
    settle_after_start()  # as the applier does; the input is not the collector's work either
    for variant in args.variants:
        print(run(raws, args.batch, variant), flush=True)
    print(f"reproduce: .venv/bin/python bench/proto_sqlite_checkpoints.py --events {args.events} --batch {args.batch} "
          f"--variants {' '.join(args.variants)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
