"""Prototype, not product code: what one SQLite store per group of partitions would save.

Applies N simulator events through the projection runtime in one process, in batches as the live
worker forms them, either into one SQLite store or split by partition into K stores (one runtime
each, as K appliers would run): smaller B-trees take fewer page writes per event.  Prints CPU and
wall µs per event for each K (docs/performance.md, "Where the floors are").

    .venv/bin/python bench/proto_store_shards.py --events 1000000 --batch 3650 --stores 1 2
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proto_person_cache import raw_records  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from projections.sql.store import SqlStore  # noqa: E402
from tests.support.runtime import runtime_for  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=3650, help="events per batch (the live worker's average)")
    parser.add_argument("--stores", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    raws = raw_records(args.events)
    gc.collect()
    gc.freeze()  # the input is not the garbage collector's work
    for k in args.stores:
        runtimes = []
        for _ in range(k):
            store = SqlStore(f"sqlite:///{tempfile.mkdtemp(prefix='careledger-shards-')}/p.sqlite3", default_rules())
            store.migrate()
            runtimes.append(runtime_for(store))
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(raws), args.batch):
            chunk = raws[i:i + args.batch]
            for shard, runtime in enumerate(runtimes):
                part = [r for r in chunk if r.partition % k == shard]
                if part:
                    runtime.apply(part)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"{k} store(s), batches of {args.batch} split by partition: {cpu / len(raws) * 1e6:.0f} µs CPU "
              f"and {wall / len(raws) * 1e6:.0f} µs wall per event", flush=True)
    stores = " ".join(map(str, args.stores))
    print(f"reproduce: .venv/bin/python bench/proto_store_shards.py --events {args.events} --batch {args.batch} "
          f"--stores {stores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
