"""Replay fast path vs the raw kafka-python read rate, and how it scales (docs/replay.md).

On a private broker (temporary CARELEDGER_HOME): publishes ``--events`` simulator events
(persons = events / 9, like ``SimConfig(persons=120000)`` → ~1.08M) to a 12-partition topic, then

1. raw: a bare kafka-python consumer (manual assign, the replay's own fetch settings) reads every
   record and does nothing with it - the ceiling for this reader on this machine; then the same
   read with the replay's decoding of every record (one process) - a worker's ceiling before any
   projection work;
2. replay: ``processors.replay`` builds the SQL projection from offset 0 into a new store (read,
   decode, the projection runtime: positions, de-duplication, load, fold, write), with 1, 2 and 4
   worker processes, each owning a share of the 12 partitions (SQLite: a shard file each, merged
   at the end; ``--partitions-too``: also topics of 1, 2 and 4 partitions with as many workers).
   Each build is paired with a raw read just before it, and its ratio taken against that read:
   this VM's speed drifts within minutes.

Prints events/s, replay/raw ratio and issue 13's goals (2 workers: >= 60,000 events/s, >= 40 % of raw).

    .venv/bin/python bench/replay.py --events 1000000            # the full run (quiet machine)
    .venv/bin/python bench/replay.py --events 50000 --workers 1 2  # a quick one
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import machine, publish_simulated, temp_stack  # noqa: E402
from careledger.settings import Settings  # noqa: E402
from processors.domain.batch import ReadModel  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from processors.replay.engine import BuildStats, decode_records, parallel_build  # noqa: E402
from processors.replay.reader import LogRecord, crc32c_native, log_bounds, make_consumer  # noqa: E402
from processors.runtime.decoding import RecordDecoder  # noqa: E402
from processors.runtime.heap import settle_after_start  # noqa: E402
from projections.binding import StoreRef  # noqa: E402


def raw_rate(settings: Settings, batch: int, decode: bool = False, fold: bool = False) -> tuple[int, float]:
    """Records/s of a bare read of the whole topic; ``decode``: each batch also goes through the
    replay's own ``decode_records`` (typed decode, key check, unseal) - the ceiling of one replay
    worker before any projection work; ``fold``: and through the read model's pure fold, with every
    person's state kept in memory (no store at all) - the ceiling before the store's work."""
    from kafka import TopicPartition

    starts, ends = log_bounds(settings)
    consumer = make_consumer(settings, max_records=batch)
    try:
        tps = [TopicPartition(settings.topics.events, p) for p in sorted(ends)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        total = sum(ends[p] - starts[p] for p in ends)
        seen = 0
        started = time.perf_counter()
        stats = BuildStats()
        decoder = RecordDecoder(lambda raw, reasons: None, lambda create: None)
        model = ReadModel(default_rules())
        state: dict[str, Any] = {}
        while seen < total:
            for recs in consumer.poll(timeout_ms=500).values():
                seen += len(recs)
                if decode or fold:
                    records, _raws = decode_records(decoder, [LogRecord(r.partition, r.offset, r.timestamp, r.key,
                                                                        r.value, r.headers or ()) for r in recs],
                                                    None, stats)
                    if fold:
                        model.fold(state, [rec for rec in records if rec.event is not None])
        return seen, seen / (time.perf_counter() - started)
    finally:
        consumer.close()


def replay_rate(settings: Settings, url: str, workers: int, batch: int) -> tuple[int, float]:
    starts, ends = log_bounds(settings)
    settle_after_start()  # as `careledger replay` does (projections/replay/cli.py)
    # a new store nothing else writes, as `careledger replay rebuild` builds its shadow
    stats = parallel_build(settings, StoreRef("sql", url, private=True), starts, ends, workers=workers,
                           batch_size=batch)
    if stats.peak_rss_mb:
        print(f"  peak RSS of the largest replay worker process: {stats.peak_rss_mb:,.0f} MB", flush=True)
    return stats.records, stats.rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--partitions-too", action="store_true",
                        help="also topics of 1, 2, 4 partitions replayed with as many workers")
    args = parser.parse_args()
    print(f"machine: {machine()}; crc32c C extension: {crc32c_native()}", flush=True)
    with temp_stack(postgres=args.store == "postgresql") as stack:
        def new_url(tag: str) -> str:
            if args.store == "postgresql":
                return stack.pg_url()
            return f"sqlite:///{stack.settings.home / f'replay-{tag}.sqlite3'}"

        settings = stack.fresh_topics(12)
        settle_after_start()  # the ceilings below run in this process: the collector as a replay worker sets it
        persons = max(500, args.events // 9)
        started = time.perf_counter()
        n = publish_simulated(settings, args.events, persons=persons, tail_months=0)
        print(f"published {n} events (persons={persons}) to 12 partitions in {time.perf_counter() - started:.0f}s",
              flush=True)
        raw_n, raw = raw_rate(settings, args.batch_size)
        print(f"raw kafka-python read      : {raw_n} records, {raw:>9,.0f} records/s", flush=True)
        _, decoded = raw_rate(settings, args.batch_size, decode=True)
        print(f"read + decode only         : {decoded:>9,.0f} events/s ({decoded / raw:.0%} of raw): "
              "one worker's ceiling before any projection work", flush=True)
        _, folded = raw_rate(settings, args.batch_size, fold=True)
        print(f"read + decode + fold, no store: {folded:>6,.0f} events/s ({folded / raw:.0%} of raw): "
              "one worker's ceiling before the store's work (state in memory)", flush=True)
        results: list[tuple[str, int, float, float]] = []  # label, events, rate, the paired raw read's rate
        for workers in args.workers:
            _, paired = raw_rate(settings, args.batch_size)
            got, rate = replay_rate(settings, new_url(f"w{workers}"), workers, args.batch_size)
            results.append((f"12 partitions, {workers} worker(s)", got, rate, paired))
            print(f"replay {args.store:<10} {workers} worker(s): {got} events, {rate:>9,.0f} events/s "
                  f"({rate / paired:.0%} of the raw read just before it: {paired:,.0f}/s)", flush=True)
        if args.partitions_too:
            for parts in (1, 2, 4):
                s = dataclasses.replace(stack.fresh_topics(parts))
                publish_simulated(s, args.events, persons=persons, tail_months=0)
                p_raw_n, p_raw = raw_rate(s, args.batch_size)
                got, rate = replay_rate(s, new_url(f"p{parts}"), parts, args.batch_size)
                results.append((f"{parts} partition(s), {parts} worker(s)", got, rate, p_raw))
                print(f"replay {parts} partition(s) / {parts} worker(s): {rate:>9,.0f} events/s "
                      f"(raw on that topic {p_raw:,.0f}/s, {rate / p_raw:.0%})", flush=True)
    one = results[0][2]
    print()
    print(f"summary ({args.events} events, {args.store}):")
    print(f"  raw kafka-python read : {raw:,.0f}/s; read + decode only: {decoded:,.0f}/s; "
          f"+ fold, no store: {folded:,.0f}/s")
    for label, _, rate, paired in results:
        print(f"  replay {label:<28}: {rate:,.0f}/s  ratio to its raw read {rate / paired:.0%} ({paired:,.0f}/s)  "
              f"scaling x{rate / one:.2f}")
    two = next(((rate, paired) for label, _, rate, paired in results if label == "12 partitions, 2 worker(s)"), None)
    if two is not None:
        rate, paired = two
        print(f"  goals, 2 workers: >= 60,000 events/s {'met' if rate >= 60_000 else 'NOT met'} ({rate:,.0f}/s); "
              f">= 40% of raw {'met' if rate >= 0.4 * paired else 'NOT met'} ({rate / paired:.0%})")
    print(f"reproduce: .venv/bin/python bench/replay.py {shlex.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
