"""``/api/counts`` latency in the server: 1,000 random contract queries on a store of N events.

Builds the SQL read model of ``--events`` simulated events (persons = events / 10, histories since
2008) straight through the projection runtime (no Kafka: the build is not what is measured), then
asks the read API in-process (FastAPI's ASGI app through ``TestClient``: routing, authorisation,
the query, JSON - no network) 1,000 random queries of CONTRACT.md §2: a random kind, and each of
key, town, from and to present or not, as a dashboard and an analyst would ask.  Prints p50 / p95 /
p99 / max, and the same queries answered by SQL (``SqlQueries.sql_counts``) for comparison.

    .venv/bin/python bench/counts_latency.py --events 1000000
    .venv/bin/python bench/counts_latency.py --events 100000 --queries 300     # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import statistics
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine  # noqa: E402
from careledger.settings import Settings  # noqa: E402
from processors.domain.model import Consumed  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from producers.simulate.generator import SimConfig, generate  # noqa: E402
from projections.sql.store import SqlStore  # noqa: E402
from schemas.enums import NEEDS, PLACEMENT_KINDS, PROGRAMS, SERVICES, VISIT_KINDS  # noqa: E402
from schemas.validation import partition_key  # noqa: E402

KEYS = {"payment": PROGRAMS, "service": SERVICES, "visit": VISIT_KINDS, "job": PLACEMENT_KINDS, "need": NEEDS,
        "person": ("physical", "visual", "intellectual"), "posting": ("",)}


def build(url: str, events: int, persons: int) -> tuple[int, list[str], date, date]:
    store = SqlStore(url, default_rules())
    store.migrate()
    offsets: dict[int, int] = defaultdict(int)
    towns: set[str] = set()
    first, last = date.max, date.min
    batch: list[Consumed] = []
    n = 0
    started = time.perf_counter()
    for event in itertools.islice(generate(SimConfig(persons=persons, seed=7, tail_months=0)), events):
        p = zlib.crc32(partition_key(event).encode()) % 12
        batch.append(Consumed(p, offsets[p], event))
        offsets[p] += 1
        towns.add(event["town"])
        day = date.fromisoformat(event["occurred_at"][:10])
        first, last = min(first, day), max(last, day)
        n += 1
        if len(batch) == 20_000:
            store.apply_batch(batch)
            batch = []
            print(f"\rbuilding the store: {n:,} events ({n / (time.perf_counter() - started):,.0f}/s)",
                  end="", file=sys.stderr, flush=True)
    store.apply_batch(batch)
    print(file=sys.stderr)
    store.close()
    return n, sorted(towns), first, last


def queries(rnd: random.Random, count: int, towns: list[str], first: date, last: date) -> list[dict[str, str]]:
    span = (last - first).days
    out = []
    for _ in range(count):
        kind = rnd.choice(list(KEYS))
        q = {"kind": kind}
        if rnd.random() < 0.5:
            q["key"] = rnd.choice(KEYS[kind])
        if rnd.random() < 0.5:
            q["town"] = rnd.choice(towns)
        if rnd.random() < 0.7:
            lo = first + timedelta(days=rnd.randint(0, span))
            q["from"] = lo.isoformat()
            if rnd.random() < 0.8:
                q["to"] = (lo + timedelta(days=rnd.randint(0, (last - lo).days))).isoformat()
        out.append(q)
    return out


def percentiles(ms: list[float]) -> str:
    ms = sorted(ms)
    pick = [ms[min(len(ms) - 1, int(len(ms) * q))] for q in (0.5, 0.95, 0.99)]
    return f"p50 {pick[0]:.2f} ms, p95 {pick[1]:.2f} ms, p99 {pick[2]:.2f} ms, max {ms[-1]:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--store", help="an existing store URL (skips the build)")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from projections.api.app import create_app

    home = Path(tempfile.mkdtemp(prefix="careledger-bench-counts-"))
    url = args.store or f"sqlite:///{home / 'counts.sqlite3'}"
    started = time.perf_counter()
    n, towns, first, last = build(url, args.events, max(500, args.events // 10))
    print(f"built {n:,} events into {url} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    settings = dataclasses.replace(Settings.from_env(), home=home, sql_url=url, anonymous_aggregates="exact")
    store = SqlStore(url, default_rules())
    app = create_app(settings, store=store, lag_probe=object())
    rnd = random.Random(42)
    asked = queries(rnd, args.queries, towns, first, last)
    with TestClient(app) as client:
        warm = time.perf_counter()
        client.get("/api/counts", params={"kind": "payment"})  # the index is built on the first count
        print(f"counts index built in {time.perf_counter() - warm:.1f}s (first query)", file=sys.stderr)
        api_ms = []
        for q in asked:
            t0 = time.perf_counter()
            response = client.get("/api/counts", params=q)
            api_ms.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.text
    sql_ms, differences = [], 0
    for q in asked:
        args_ = (q["kind"], q.get("key"), q.get("from") and date.fromisoformat(q["from"]),
                 q.get("to") and date.fromisoformat(q["to"]), q.get("town"))
        t0 = time.perf_counter()
        want = store.queries.sql_counts(*args_)
        sql_ms.append((time.perf_counter() - t0) * 1000)
        differences += store.queries.counts(*args_) != want
    print(f"machine: {machine()}")
    print(f"store: {n:,} events; {len(asked)} random contract queries (kind, and key/town/from/to each maybe)")
    print(f"GET /api/counts in the server (index): {percentiles(api_ms)}; mean {statistics.mean(api_ms):.2f} ms")
    print(f"same queries answered by SQL         : {percentiles(sql_ms)}")
    print(f"answers that differ between index and SQL: {differences}")
    print(f"reproduce: .venv/bin/python bench/counts_latency.py --events {args.events} --queries {args.queries}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
