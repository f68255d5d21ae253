"""Prototype, not product code: which B-trees each batch's commit writes, and what time-ordered
event ids would save the live applier (docs/performance.md, "Which pages a commit writes").

``--mode pages``: applies N simulator events through the projection runtime into a fresh SQLite
store in one process (batches as the live worker forms them), empties the WAL before each batch,
and for every 20th batch reads the WAL's frame headers and names the B-tree of each page
(SQLite's ``dbstat``): the pages that batch's commit wrote, per table and index, per event.

``--mode ids``: the same events twice in one process, as the product would apply them
(``bench/proto_sqlite_checkpoints.py``'s run, 50,000-page checkpoints), once with the simulator's
random event ids and once with ids that sort in the order the events arrive (a reversal's
``reverses`` renamed with them): what an append-mostly de-duplication index would save.

    .venv/bin/python bench/proto_wal_pages.py --mode pages --events 1000000
    .venv/bin/python bench/proto_wal_pages.py --mode ids --events 1000000
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event  # noqa: E402

from bench.proto_person_cache import raw_records  # noqa: E402
from bench.proto_sqlite_checkpoints import run as run_variant  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from processors.runtime.heap import settle_after_start  # noqa: E402
from processors.runtime.records import RawRecord  # noqa: E402
from projections.sql.store import SqlStore  # noqa: E402
from tests.support.runtime import runtime_for  # noqa: E402

WAL_HEADER, FRAME_HEADER = 32, 24


def wal_pages(path: str) -> list[int]:
    """The page number of every frame in the WAL file of ``path``."""
    data = Path(f"{path}-wal").read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    frame = FRAME_HEADER + page_size
    return [struct.unpack(">I", data[at:at + 4])[0] for at in range(WAL_HEADER, len(data) - frame + 1, frame)]


def pages_per_btree(raws: list[RawRecord], batch: int, every: int = 20) -> None:
    path = f"{tempfile.mkdtemp(prefix='careledger-wal-')}/p.sqlite3"
    store = SqlStore(f"sqlite:///{path}", default_rules())
    store.migrate()

    @event.listens_for(store.engine, "connect")
    def _no_checkpoints(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

    store.engine.dispose()
    runtime = runtime_for(store)
    side = sqlite3.connect(path)
    total: collections.Counter[str] = collections.Counter()
    sampled = 0
    for n, i in enumerate(range(0, len(raws), batch), start=1):
        side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        chunk = raws[i:i + batch]
        runtime.apply(chunk)
        if n % every:
            continue
        owner = dict(side.execute("SELECT pageno, name FROM dbstat").fetchall())
        pages = collections.Counter(owner.get(p, "(new or free)") for p in wal_pages(path))
        total.update(pages)
        sampled += len(chunk)
        top = ", ".join(f"{name} {count / len(chunk):.2f}" for name, count in pages.most_common(5))
        print(f"after {i + len(chunk):>9,} events: {sum(pages.values()) / len(chunk):.2f} pages per event ({top})",
              flush=True)
    print(f"sampled batches, pages written per event: {sum(total.values()) / sampled:.2f}; "
          + ", ".join(f"{name} {count / sampled:.2f}" for name, count in total.most_common(8)))
    sizes = side.execute("SELECT name, count(*) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 6").fetchall()
    print("B-tree sizes at the end, pages: " + ", ".join(f"{name} {count:,}" for name, count in sizes))
    store.close()


def time_ordered(raws: list[RawRecord]) -> list[RawRecord]:
    """The same records with event ids that sort in arrival order (and ``reverses`` renamed)."""
    events = [json.loads(r.value) for r in raws]
    renamed = {ev["event_id"]: f"{i:012d}-{ev['event_id'][:20]}" for i, ev in enumerate(events)}
    out = []
    for raw, ev in zip(raws, events, strict=True):
        ev["event_id"] = renamed[ev["event_id"]]
        payload = ev.get("payload")
        if isinstance(payload, dict) and payload.get("reverses") in renamed:
            payload["reverses"] = renamed[payload["reverses"]]
        out.append(raw._replace(value=json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["pages", "ids"], required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=3650, help="events per batch (the live worker's average)")
    args = parser.parse_args()
    raws = raw_records(args.events)
    if args.mode == "pages":
        settle_after_start()
        pages_per_btree(raws, args.batch)
    else:
        ordered = time_ordered(raws)
        settle_after_start()
        for name, records in (("random ids (the simulator's)", raws), ("time-ordered ids", ordered)):
            print(f"{name:<30} {run_variant(records, args.batch, 'pages=50000')}", flush=True)
    print(f"reproduce: .venv/bin/python bench/proto_wal_pages.py --mode {args.mode} --events {args.events} "
          f"--batch {args.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
