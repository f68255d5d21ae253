"""Ingest benchmark: validated-and-published events/s vs the raw kafka-python producer.

Both run against the same private single-node broker, on topics with the same partitions, with
the same reliability settings (acks=all, idempotence, lz4, linger, batch).  The raw side sends
pre-encoded, pre-keyed messages with kafka-python as shipped (default partitioner); careledger's
side is ``run_ingest`` as users run it: JSON parsing, validation, pseudonymisation, sealing,
de-duplication and publishing (in worker processes, one per Kafka partition share, under
``--workers``).  Each careledger run is paired with a raw run just before it and a home of its own
(every person new), after an untimed warm-up of both sides (``--warm-up``).

    .venv/bin/python bench/ingest.py                         # 1M events: --workers 0, then auto
    .venv/bin/python bench/ingest.py --events 200000         # quicker
    .venv/bin/python bench/ingest.py --workers auto 3 auto 3 # run-to-run spread, 2 vs 3 workers

``--workers`` lists the ``careledger ingest --workers`` values to time, in order; a value may
repeat to see the spread.  Default: 0, and "auto" (one worker process per core).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaProducer  # noqa: E402

from careledger.settings import Settings, Topics  # noqa: E402
from infra.kafka_broker import KafkaBroker, ensure_topics  # noqa: E402
from infra.process import free_port  # noqa: E402
from producers.ingest import run_ingest, workers_for  # noqa: E402
from producers.publisher import PRODUCER_DEFAULTS  # noqa: E402
from producers.simulate.generator import SimConfig, generate  # noqa: E402
from schemas.validation import partition_key  # noqa: E402

WARM_UP_EVENTS = 100_000


def temp_broker(home: Path) -> tuple[Settings, KafkaBroker]:
    port = free_port()
    settings = dataclasses.replace(
        Settings.from_env(), home=home, kafka_port=port, kafka_controller_port=free_port(),
        kafka_bootstrap=f"127.0.0.1:{port}", kafka_security={},
    )
    broker = KafkaBroker(settings)
    broker.start()
    return settings, broker


def settle(seconds: float = 5.0) -> None:
    """Let the machine go quiet before a timed run: the input file and the previous run's log
    segments are written back to disk, and the broker finishes with them (without this, whichever
    run came first after another was 5-10 % slower on this 2-core machine)."""
    gc.collect()
    os.sync()
    time.sleep(seconds)


def raw_publish(settings: Settings, lines: list[bytes], keys: list[bytes]) -> float:
    producer = KafkaProducer(**settings.kafka_client_options(), **{**PRODUCER_DEFAULTS, "client_id": "raw-bench"})
    started = time.perf_counter()
    for key, value in zip(keys, lines, strict=True):
        producer.send(settings.topics.events, key=key, value=value)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--persons", type=int, default=120_000)
    parser.add_argument("--warm-up", type=int, default=WARM_UP_EVENTS,
                        help="events sent untimed through each side first")
    parser.add_argument("--workers", nargs="+", default=["0", "auto"],
                        help="ingest --workers values to time ('auto' = the default)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="careledger-bench-ingest-"))
    settings, broker = temp_broker(home)
    try:
        print(f"generating {args.events:,} simulated events ...", file=sys.stderr)
        events = list(itertools.islice(generate(SimConfig(persons=args.persons, seed=1)), args.events))
        lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in events]
        keys = [partition_key(e).encode() for e in events]
        jsonl = home / "events.jsonl"
        jsonl.write_bytes(b"\n".join(lines) + b"\n")
        del events

        n = len(lines)
        auto = workers_for(settings, str(jsonl))
        print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}")
        print(f"events: {n:,} ({jsonl.stat().st_size / n:.0f} bytes/event on average)")
        # Warm-up, untimed: the first timed run after a fresh broker came out 10-20 % below the
        # later ones whatever it ran (the broker JVM compiles its paths for the producers it meets);
        # a broker in service is warm.
        warm = min(n, args.warm_up)
        warm_settings = dataclasses.replace(settings, topics=Topics.with_namespace("warm"), home=home / "warm")
        ensure_topics(warm_settings)
        warm_file = home / "warm.jsonl"
        warm_file.write_bytes(b"\n".join(lines[:warm]) + b"\n")
        raw_publish(warm_settings, lines[:warm], keys[:warm])
        run_ingest(warm_settings, str(warm_file), progress=False, out=io.StringIO(), err=sys.stderr,
                   workers=workers_for(settings, str(jsonl)))
        print(f"warm-up (untimed): {warm:,} events through each side", flush=True)
        # Each careledger run is paired with a raw run just before it, and compared with that one:
        # this machine's speed drifts by tens of percent over minutes (other tenants), so a ratio
        # across runs minutes apart measures the drift as much as the code.
        for run, workers in enumerate(args.workers):
            raw_settings = dataclasses.replace(settings, topics=Topics.with_namespace(f"raw{run}"))
            # a home of its own: each run meets every person for the first time (creates their
            # keys), as a first ingest does, rather than finding the previous run's keys
            ours_settings = dataclasses.replace(settings, topics=Topics.with_namespace(f"ours{run}"),
                                                home=home / f"run{run}")
            ensure_topics(raw_settings)
            ensure_topics(ours_settings)
            settle()
            raw_rate = n / raw_publish(raw_settings, lines, keys)
            settle()
            started = time.perf_counter()
            code = run_ingest(ours_settings, str(jsonl), progress=False, out=io.StringIO(), err=sys.stderr,
                              workers=None if workers == "auto" else int(workers))
            rate = n / (time.perf_counter() - started)
            if code != 0:
                print(f"careledger ingest exited {code}", file=sys.stderr)
                return 1
            label = f"auto={auto}" if workers == "auto" else workers
            print(f"run {run + 1}: raw kafka-python producer {raw_rate:>8,.0f} events/s; "
                  f"careledger ingest --workers {label:<7} {rate:>8,.0f} events/s; "
                  f"ratio careledger/raw: {rate / raw_rate:.0%} (goal >= 80%)", flush=True)
        print(f"reproduce: .venv/bin/python bench/ingest.py --events {args.events} --persons {args.persons} "
              f"--warm-up {args.warm_up} --workers {' '.join(args.workers)}")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
