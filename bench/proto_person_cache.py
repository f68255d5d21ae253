"""Prototype, not product code: what a cache of person cores in the applier would save.

Applies N simulator events through the projection runtime into a fresh SQLite store (no Kafka), in
batches, twice in separate runs: as the product does (every batch loads its persons' core rows with
SQL), and with the persons' core rows served from an in-process dict filled after each write (no
bound, no invalidation: a measurement of the saving, not a design).  Prints events/s, CPU µs per
event and a digest of the read model, which must be the same for both (docs/performance.md).

    .venv/bin/python bench/proto_person_cache.py --events 300000 --mode sql
    .venv/bin/python bench/proto_person_cache.py --events 300000 --mode cache
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.domain.aggregate import PersonAggregate  # noqa: E402
from processors.domain.batch import BatchChanges, StatePlan  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from processors.runtime.contracts import Positions  # noqa: E402
from processors.runtime.records import RawRecord  # noqa: E402
from producers.simulate.generator import SimConfig, generate  # noqa: E402
from projections.sql import writer as sql_writer  # noqa: E402
from projections.sql.rows import ALERT_STATE_COLUMNS, alert_from_row, person_from_row, person_row  # noqa: E402
from projections.sql.store import SqlStore  # noqa: E402
from schemas.validation import partition_key  # noqa: E402
from tests.support.runtime import runtime_for  # noqa: E402

SELECT_ALERTS = f"SELECT {', '.join(ALERT_STATE_COLUMNS)} FROM alerts"  # noqa: S608 - constant columns


def raw_records(n: int) -> list[RawRecord]:
    offsets: dict[int, int] = {}
    out = []
    for event in itertools.islice(generate(SimConfig(persons=n // 9, seed=3)), n):
        key = partition_key(event)
        partition = hash(key) % 12
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        out.append(RawRecord(partition, offset, key.encode(),
                             json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()))
    return out


def install_cache(cores: dict[str, tuple[Any, ...]]) -> None:
    load, write = sql_writer.SqlUnitOfWork.load, sql_writer.SqlUnitOfWork.write

    def cached_load(self: sql_writer.SqlUnitOfWork, plan: StatePlan) -> dict[str, PersonAggregate]:
        hit = {p for p in plan.persons if p in cores}
        plan.persons -= hit
        aggs = load(self, plan)  # SQL for the persons not cached, and every collection
        plan.persons |= hit
        for person in hit:
            core = person_from_row(cores[person])
            loaded = aggs.get(person)
            if loaded is not None:
                core.payments, core.pending_reversals, core.needs = (loaded.payments, loaded.pending_reversals,
                                                                     loaded.needs)
            aggs[person] = core
        if hit:
            for row in self.writer.in_query.rows(self.conn, SELECT_ALERTS, ["person_id"], sorted(hit)):
                alert = alert_from_row(row)
                aggs[alert.person_id].alerts[alert.alert_id] = alert
        return aggs

    def remembering_write(self: sql_writer.SqlUnitOfWork, changes: BatchChanges, positions: Positions) -> None:
        write(self, changes, positions)
        for person, agg in changes.persons.items():
            cores[person] = person_row(agg)

    sql_writer.SqlUnitOfWork.load = cached_load  # type: ignore[method-assign]
    sql_writer.SqlUnitOfWork.write = remembering_write  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--mode", choices=["sql", "cache"], required=True)
    args = parser.parse_args()
    raws = raw_records(args.events)
    gc.collect()
    gc.freeze()  # the input is not the garbage collector's work
    cores: dict[str, tuple[Any, ...]] = {}
    if args.mode == "cache":
        install_cache(cores)
    store = SqlStore(f"sqlite:///{tempfile.mkdtemp(prefix='careledger-proto-')}/p.sqlite3", default_rules())
    store.migrate()
    runtime = runtime_for(store)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(raws), args.batch):
        runtime.apply(raws[i:i + args.batch])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    snapshot = store.snapshot_rows()
    digest = hashlib.sha1(repr(sorted((k, sorted(map(repr, v))) for k, v in snapshot.items())).encode()).hexdigest()
    print(f"{args.mode}: {len(raws):,} events in batches of {args.batch}: {len(raws) / wall:,.0f} events/s, "
          f"{cpu / len(raws) * 1e6:.0f} µs CPU per event; read model digest {digest[:12]}")
    print(f"reproduce: .venv/bin/python bench/proto_person_cache.py --events {args.events} --batch {args.batch} "
          f"--mode {args.mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
