"""Prototype measurement (in process, no Kafka): what a scratch store and resident state save a build.

Applies ``--events`` simulator events through the projection runtime into a new SQLite store in
batches of ``--batch`` (the replay's 20,000), as one replay worker does after decoding, in one of
three ways, and prints CPU and wall time per event (docs/performance.md, "replay with resident state"):

* ``store``: the store as every worker opens it (WAL, ``synchronous=NORMAL``, 16 MiB cache);
* ``scratch``: a replay shard (``projections/sql/engines.py`` ``scratch_url``: no WAL, no fsync,
  64 MiB cache; ``--cache-mib`` another size);
* ``resident``: a scratch shard whose state the build keeps in memory
  (``processors/runtime/resident.py``), the collector paused as the replay does;
* ``nowrite``: as ``resident``, but the unit of work writes nothing at all - the ceiling of any
  other write strategy (e.g. a build that writes its final state once at the end): what the
  decode, the runtime and the fold cost on their own.

    .venv/bin/python bench/proto_resident.py --events 500000 --mode store
    .venv/bin/python bench/proto_resident.py --events 500000 --mode resident
    .venv/bin/python bench/proto_resident.py --events 500000 --mode nowrite

``--page-size N`` creates the store with another SQLite page size (docs/performance.md, "the
page size": measured and dropped).
"""

from __future__ import annotations

import argparse
import shlex
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event  # noqa: E402

from bench.proto_person_cache import raw_records  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from processors.replay.engine import peak_rss_mb  # noqa: E402
from processors.runtime.contracts import EventKey, Positions  # noqa: E402
from processors.runtime.heap import CollectorPause, settle_after_start  # noqa: E402
from processors.runtime.resident import ResidentWriter  # noqa: E402
from projections.sql.engines import scratch_url  # noqa: E402
from projections.sql.store import SqlStore  # noqa: E402
from tests.support.runtime import runtime_for  # noqa: E402


class _NothingWritten:
    """A unit of work that stores nothing (``--mode nowrite``); the resident state answers reads."""

    def offsets(self, partitions: Iterable[int]) -> Positions:
        return {}

    def known(self, keys: Sequence[EventKey]) -> set[EventKey]:
        return set()

    def load(self, plan: Any) -> Any:
        return {}

    def write(self, changes: Any, positions: Positions) -> None:
        return None


class NoWriter:
    """A :class:`~processors.runtime.contracts.Writer` whose transactions write nothing."""

    name = "nowrite"

    @contextmanager
    def transaction(self) -> Iterator[_NothingWritten]:
        yield _NothingWritten()

    def offsets(self) -> Positions:
        return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--mode", choices=["store", "scratch", "resident", "nowrite"], default="resident")
    parser.add_argument("--cache-mib", type=int, default=0, help="another page cache for scratch stores")
    parser.add_argument("--page-size", type=int, default=0, help="create the store with this SQLite page size")
    args = parser.parse_args()
    raws = raw_records(args.events)
    path = Path(tempfile.mkdtemp(prefix='proto-resident-')) / 'build.sqlite3'
    if args.page_size:  # fixed when the file gets its first page: before the store sets WAL mode
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA page_size={int(args.page_size)}")
            db.execute("CREATE TABLE page_size_probe (x)")
            db.execute("DROP TABLE page_size_probe")
    url = f"sqlite:///{path}"
    store = SqlStore(url if args.mode == "store" else scratch_url(url), default_rules())
    store.migrate()
    if args.cache_mib:
        @event.listens_for(store.engine, "connect")
        def _cache(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.execute(f"PRAGMA cache_size=-{args.cache_mib * 1024}")
        store.engine.dispose()
    runtime = runtime_for(store)  # as a replay worker runs it (tests/support/runtime.py)
    resident = store.binding().resident
    if args.mode in ("resident", "nowrite") and resident is not None:
        inner = NoWriter() if args.mode == "nowrite" else runtime.writer
        runtime.writer = ResidentWriter(inner, resident(), args.events)
    settle_after_start()
    before = peak_rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    with CollectorPause(args.mode in ("resident", "nowrite")):
        for i in range(0, len(raws), args.batch):
            runtime.apply(raws[i:i + args.batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    store.close()
    n = len(raws)
    print(f"{args.mode}: {n} events, {cpu / n * 1e6:.1f} µs CPU and {wall / n * 1e6:.1f} µs wall per event; "
          f"peak RSS {peak_rss_mb():,.0f} MB ({before:,.0f} MB with the input in memory)")
    print(f"reproduce: .venv/bin/python bench/proto_resident.py {shlex.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
