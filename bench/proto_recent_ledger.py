"""Prototype, not product code: what the ledger's person index costs per event, and what a
recent-rows table merged into the ledger in person order would save (docs/performance.md).

The live applier's commit writes ~1 page per event for ``ix_ledger_person_key_period`` late in a
1M-event run: each event lands at a random place of that index.  Here only the ledger is written
(synthetic rows shaped like the product's: a 33-character pseudonym of one of ``--persons``,
program, period, day, a random event id, a ~250-byte payload), in batches of ``--batch`` with one
commit each, on a WAL file with the product's settings (``synchronous=NORMAL``,
``wal_autocheckpoint=50000``, 16 MiB cache):

* ``direct``: the product's table and its two indexes, every batch inserted into it;
* ``unindexed``: the same without the person index (what that index costs: the difference);
* ``recent=N``: batches go to ``ledger_recent`` (same columns and indexes, small and hot); every
  N events its rows are moved into ``ledger`` sorted by (person, program, period), in the batch's
  transaction, so each page of the person index is written about once per merge.

What it leaves out: the reads that would have to look in both tables (the loads, the timeline,
erasure, the counts index's tail) - small and indexed, but not measured here.

    .venv/bin/python bench/proto_recent_ledger.py --events 1000000 --variants direct unindexed recent=100000 recent=300000
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

COLUMNS = ("event_id", "type", "kind", "key", "town", "date", "person_id", "period", "amount_fen", "positions",
           "counted", "reversed_by", "occurred_at", "payload", "partition", "offset")
PROGRAMS = ("living_subsidy", "nursing_subsidy", "medical_aid", "pension_insurance", "accident_insurance",
            "rehabilitation", "home_visit", "assistive_device")


def create(conn: sqlite3.Connection, name: str, person_index: bool = True) -> None:
    conn.execute(f"""CREATE TABLE {name} (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id VARCHAR(64) NOT NULL,
        type VARCHAR(64) NOT NULL, kind VARCHAR(16), key VARCHAR(64) NOT NULL, town VARCHAR(128) NOT NULL,
        date VARCHAR(10) NOT NULL, person_id VARCHAR(128) NOT NULL, period VARCHAR(7), amount_fen BIGINT NOT NULL,
        positions BIGINT NOT NULL, counted SMALLINT NOT NULL, reversed_by VARCHAR(64), occurred_at VARCHAR(40) NOT NULL,
        payload TEXT NOT NULL, partition INTEGER NOT NULL, "offset" BIGINT NOT NULL)""")
    conn.execute(f"CREATE UNIQUE INDEX ux_{name}_date_event_id ON {name} (date, event_id)")
    if person_index:
        conn.execute(f"CREATE INDEX ix_{name}_person_key_period ON {name} (person_id, key, period)")


def rows(events: int, persons: int, seed: int) -> list[tuple[object, ...]]:
    rnd = random.Random(seed)
    people = [f"p{rnd.getrandbits(128):032x}" for _ in range(persons)]
    out = []
    for i in range(events):
        day = 738000 + i * 365 // events  # a year of days, in arrival order
        d = time.strftime("%Y-%m-%d", time.gmtime((day - 719163) * 86400))
        person, key = rnd.choice(people), rnd.choice(PROGRAMS)
        payload = '{"amount_fen":46000,"note":"' + "x" * rnd.randint(150, 250) + '"}'
        out.append((uuid.UUID(int=rnd.getrandbits(128)).hex, "payment.made", "payment", key, "锦屏街道", d, person,
                    d[:7], 46000, 0, 1, None, d + "T10:00:00+08:00", payload, i % 6, i // 6))
    return out


def run(variant: str, data: list[tuple[object, ...]], batch: int, folder: Path) -> tuple[float, float, int]:
    path = folder / f"{variant.replace('=', '-')}.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=50000")
    conn.execute("PRAGMA cache_size=-16384")
    create(conn, "ledger", person_index=variant != "unindexed")
    every = int(variant.split("=")[1]) if variant.startswith("recent=") else 0
    if every:
        create(conn, "ledger_recent")
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    marks = ", ".join("?" * len(COLUMNS))
    target = "ledger_recent" if every else "ledger"
    insert = f"INSERT INTO {target} ({cols}) VALUES ({marks})"  # noqa: S608 - our own names
    merges, since = 0, 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, len(data), batch):
        chunk = data[i:i + batch]
        conn.execute("BEGIN")
        conn.executemany(insert, chunk)
        since += len(chunk)
        if every and since >= every:
            conn.execute(f"INSERT INTO ledger ({cols}) SELECT {cols} FROM ledger_recent "  # noqa: S608
                         "ORDER BY person_id, key, period")
            conn.execute("DELETE FROM ledger_recent")
            merges, since = merges + 1, 0
        conn.execute("COMMIT")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    conn.close()
    return cpu, wall, merges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=3_650)
    parser.add_argument("--variants", nargs="+", default=["direct", "recent=100000"])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = rows(args.events, args.persons, args.seed)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for variant in args.variants:
            cpu, wall, merges = run(variant, data, args.batch, Path(tmp))
            n = len(data)
            print(f"{variant:>16}: {cpu / n * 1e6:6.1f} µs CPU, {wall / n * 1e6:6.1f} µs wall per event "
                  f"({wall:.1f} s; {merges} merges)", flush=True)
    print("reproduce: .venv/bin/python bench/proto_recent_ledger.py --events "
          f"{args.events} --persons {args.persons} --batch {args.batch} --variants {' '.join(args.variants)}")


if __name__ == "__main__":
    main()
