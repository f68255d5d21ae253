"""Scale-out benchmark: end-to-end events/s with 1, 2 and 3 SQL workers (one consumer group,
PostgreSQL store) in the same run, the raw consumer rate for reference, and the capacity model
of docs/capacity.md computed from those measurements and from the simulator's event mix.

One private broker + PostgreSQL (bench/common.py).  N simulated events are published once (not
timed); each worker count then starts from nothing on a new, empty database and a new consumer
group, and the clock runs from process start to lag 0 ("produce → caught up" with the events
already on the log; publishing is not the bottleneck, see bench/ingest.py).

    .venv/bin/python bench/scale.py                         # 300k events, workers 1,2,3
    .venv/bin/python bench/scale.py --events 30000          # quick
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, publish_simulated, raw_consume_rate, run_workers, temp_stack  # noqa: E402

SCALES = (("district", 20_000), ("city", 200_000), ("province", 3_000_000), ("country", 85_000_000))


def simulated_year(persons: int, seed: int = 3) -> dict[str, float]:
    """Events per person in one simulated year (Jul 2024 - Jun 2025: steady state after the
    calibrated H1), the busiest day's share, and the whole history per person (2008 - Jun 2025)."""
    from producers.simulate.generator import SimConfig, generate

    total = 0
    year = 0
    by_day: collections.Counter[str] = collections.Counter()
    people: set[str] = set()
    for event in generate(SimConfig(persons=persons, seed=seed, tail_months=12)):
        total += 1
        if event.get("person_id"):
            people.add(event["person_id"])
        month = event["occurred_at"][:7]
        if "2024-07" <= month <= "2025-06":
            year += 1
            by_day[event["occurred_at"][:10]] += 1
    n = len(people)
    return {"persons": n, "events_year": year, "per_person_year": year / n,
            "peak_day_per_person": max(by_day.values()) / n, "history_per_person": total / n}


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--persons", type=int, default=20_000, help="simulated persons behind the events")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to run, in order")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--sim-persons", type=int, default=20_000,
                        help="district size used to measure events per person per year")
    parser.add_argument("--replay-rate", type=float, default=None,
                        help="events/s of bench/replay.py (one worker, same store) for the replay column; "
                             "default: the per-store live apply rate")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    cores = os.cpu_count() or 0

    print(f"machine: {machine()}")
    print(f"NOTE: this machine has {cores} cores; broker, PostgreSQL, producer and every worker share them,"
          " so more workers than cores compete for CPU rather than add it.")
    with temp_stack(postgres=True, partitions=args.partitions) as stack:
        settings = stack.fresh_topics()
        print(f"publishing {args.events:,} simulated events ({args.persons:,} persons, "
              f"{args.partitions} partitions; not timed) ...", flush=True)
        n = publish_simulated(settings, args.events, persons=args.persons)
        raw = raw_consume_rate(settings, n)
        print(f"raw aiokafka consumer (json.loads each, 1 process): {raw:>9,.0f} events/s", flush=True)
        runs = []
        for k in counts:
            run = run_workers(settings, stack.pg_url(), k, f"w{k}", n)
            runs.append(run)
            print(f"{k} worker(s), PostgreSQL store: {run.rate:>9,.0f} events/s end to end "
                  f"({n:,} events in {run.caught_up_s:.1f} s; first commit after {run.first_progress_s:.1f} s; "
                  f"{run.steady_rate:,.0f} events/s after it)", flush=True)
    best = max(runs, key=lambda r: r.steady_rate)
    one = next((r for r in runs if r.workers == 1), runs[0])
    print(f"speed-up of {best.workers} workers over 1: {best.steady_rate / one.steady_rate:.2f}x (steady rates)")

    sim = simulated_year(args.sim_persons)
    print(f"simulator ({args.sim_persons:,}-person district, seed 3): {sim['persons']:,} persons, "
          f"{sim['events_year']:,} events Jul 2024 - Jun 2025 = {sim['per_person_year']:.1f} events/person/year; "
          f"busiest day {sim['peak_day_per_person']:.3f} events/person; "
          f"whole history 2008 - Jun 2025 {sim['history_per_person']:.1f} events/person")

    per_store = best.steady_rate  # one PostgreSQL store applies batches one at a time (advisory lock)
    replay_rate = args.replay_rate or per_store
    replay_from = "bench/replay.py (--replay-rate)" if args.replay_rate else "the live apply rate"
    print(f"capacity model (per-store apply rate {per_store:,.0f} events/s = best steady rate above; "
          f"replay at {replay_rate:,.0f} events/s from {replay_from}):")
    print(f"{'scale':<9} {'persons':>11} {'events/year':>13} {'avg ev/s':>9} {'busiest day':>12} "
          f"{'day in 1 h ev/s':>15} {'store shards':>12} {'history':>14} {'replay 1 store':>15}")
    for name, persons in SCALES:
        year = sim["per_person_year"] * persons
        avg = year / (365 * 86400)
        peak_day = sim["peak_day_per_person"] * persons
        peak_rate = peak_day / 3600  # the busiest day's events applied within one hour
        shards = max(1, math.ceil(peak_rate / per_store))
        history = sim["history_per_person"] * persons
        print(f"{name:<9} {persons:>11,} {year:>13,.0f} {avg:>9.3g} {peak_day:>12,.0f} {peak_rate:>15,.0f} "
              f"{shards:>12} {history:>14,.0f} {fmt_duration(history / replay_rate):>15}")
    print("replay 1 store: the whole simulated history (2008 - Jun 2025) per person x persons, at the replay rate")
    print(f"reproduce: .venv/bin/python bench/scale.py --events {args.events} --persons {args.persons} "
          f"--workers {args.workers} --partitions {args.partitions} --sim-persons {args.sim_persons}"
          + (f" --replay-rate {args.replay_rate:.0f}" if args.replay_rate else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
