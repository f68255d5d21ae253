"""One replay build alone, in a small coordinator process: where its time and memory go.

bench/replay.py also measures the raw read and the ceilings in its own process before it builds,
so its one-worker build shares a process that has held much more. This script only publishes
``--events`` simulator events to a private 12-partition topic and builds a new private SQLite
store from them (``parallel_build`` of ``StoreRef(..., private=True)``, as ``careledger replay
rebuild`` builds its shadow), printing events/s, the merge, the garbage collector's time in this
process and the largest worker's peak RSS (docs/performance.md).

    .venv/bin/python bench/replay_build.py --events 1000000 --workers 2
    CARELEDGER_REPLAY_RESIDENT_EVENTS=0 .venv/bin/python bench/replay_build.py --events 1000000 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import machine, publish_simulated, temp_stack  # noqa: E402
from processors.replay.engine import parallel_build  # noqa: E402
from processors.replay.reader import log_bounds  # noqa: E402
from processors.runtime.heap import GcClock, settle_after_start  # noqa: E402
from projections.binding import StoreRef  # noqa: E402


class MergeTime(logging.Handler):
    """Picks the merge's duration out of the engine's log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.line = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("merged"):
            self.line = record.getMessage()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=20_000)
    args = parser.parse_args()
    merge = MergeTime()
    logger = logging.getLogger("careledger.replay")
    logger.addHandler(merge)
    logger.setLevel(logging.INFO)
    print(f"machine: {machine()}", flush=True)
    with temp_stack(postgres=False) as stack:
        settings = stack.fresh_topics(12)
        published = publish_simulated(settings, args.events, persons=max(500, args.events // 9), tail_months=0)
        starts, ends = log_bounds(settings)
        settle_after_start()
        spent: dict[str, float] = {}
        clock = GcClock(spent).install()
        started = time.perf_counter()
        stats = parallel_build(settings, StoreRef("sql", f"sqlite:///{settings.home / 'build.sqlite3'}", private=True),
                               starts, ends, workers=args.workers, batch_size=args.batch_size)
        took = time.perf_counter() - started
        clock.remove()
    resident = os.environ.get("CARELEDGER_REPLAY_RESIDENT_EVENTS", "default")
    print(f"{published} events, {args.workers} worker(s), resident events per worker: {resident}")
    print(f"build: {stats.records / took:,.0f} events/s ({took:.1f} s); {merge.line or 'no merge'}")
    # one worker builds in this process; more are spawned and report their own peak
    workers = f"; largest worker's peak RSS: {stats.peak_rss_mb:,.0f} MB" if stats.peak_rss_mb else " (the worker)"
    print(f"garbage collector in this process: {spent['gc']:.1f} s{workers}")
    env = "" if resident == "default" else f"CARELEDGER_REPLAY_RESIDENT_EVENTS={resident} "
    print(f"reproduce: {env}.venv/bin/python bench/replay_build.py {shlex.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
