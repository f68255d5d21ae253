"""The pure fold alone (no Kafka, no store): ``plan`` + ``fold`` per event over decoded simulator events.

Every build and the live worker run this fold once per event; ``bench/proto_resident.py
--mode nowrite`` adds the decode and the runtime around it.  Decodes ``--events`` simulator
events once, then folds them into empty state in batches of ``--batch`` ``--repeat`` times and
prints the best wall time per event (the least disturbed run on a noisy VM; the collector is off
while folding, as in a resident build).  For an A/B of a change, run it on both trees in turn,
twice each (docs/performance.md, "the fold's own cost").

    .venv/bin/python bench/fold.py --events 200000
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proto_person_cache import raw_records  # noqa: E402
from processors.domain.batch import ReadModel  # noqa: E402
from processors.domain.model import Consumed  # noqa: E402
from processors.domain.rules_config import default_rules  # noqa: E402
from processors.runtime.decoding import RecordDecoder  # noqa: E402


def decoded(events: int, batch: int) -> list[Consumed]:
    """The simulator's events as a worker's decoder gives them (no dead-letter topic, no key store)."""
    raws = raw_records(events)
    decoder = RecordDecoder(lambda raw, reasons: None, lambda create: None)
    out: list[Consumed] = []
    for i in range(0, len(raws), batch):
        out += decoder.decode(raws[i:i + batch])
    return [rec for rec in out if rec.event is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    records = decoded(args.events, args.batch)
    model = ReadModel(default_rules())
    times = []
    gc.disable()
    for _ in range(args.repeat):
        state: dict = {}
        started = time.perf_counter()
        for i in range(0, len(records), args.batch):
            batch = records[i:i + args.batch]
            model.plan([rec.event for rec in batch])  # type: ignore[misc]
            model.fold(state, batch)
        times.append(time.perf_counter() - started)
    gc.enable()
    n = len(records)
    print(f"plan + fold: {n} events, best {min(times) / n * 1e6:.2f} µs per event "
          f"(median {sorted(times)[len(times) // 2] / n * 1e6:.2f}, {args.repeat} runs)")
    print(f"reproduce: .venv/bin/python bench/fold.py {shlex.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
