"""Ingest benchmark: validated-and-published events/s vs the raw kafka-python producer.

Both run against the same private single-node broker, on topics with the same partitions, with
the same reliability settings (acks=all, idempotence, lz4, linger, batch).  The raw side sends
pre-encoded, pre-keyed messages with kafka-python as shipped (default partitioner); careledger's
side is ``run_ingest`` as users run it: JSON parsing, validation, pseudonymisation (in worker
processes under ``--workers``), sealing, de-duplication, and its publisher (whose partitioner
caches each key's hash, same partitions).

    .venv/bin/python bench/ingest.py                  # 1M events (simulator, ~1.08M with 120k persons)
    .venv/bin/python bench/ingest.py --events 200000  # quicker
    .venv/bin/python bench/ingest.py --workers 0 1    # checking in the ingest process, then with one worker

``--workers`` lists the ``careledger ingest --workers`` values to time (default: 0, and "auto",
which is one worker process per core but one).
"""

from __future__ import annotations

import argparse
import dataclasses
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


def temp_broker(home: Path) -> tuple[Settings, KafkaBroker]:
    port = free_port()
    settings = dataclasses.replace(
        Settings.from_env(), home=home, kafka_port=port, kafka_controller_port=free_port(),
        kafka_bootstrap=f"127.0.0.1:{port}", kafka_security={},
    )
    broker = KafkaBroker(settings)
    broker.start()
    return settings, broker


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

        raw_settings = dataclasses.replace(settings, topics=Topics.with_namespace("raw"))
        ensure_topics(raw_settings)

        raw_s = raw_publish(raw_settings, lines, keys)
        n = len(lines)
        ours: dict[str, float] = {}
        for workers in args.workers:
            ours_settings = dataclasses.replace(settings, topics=Topics.with_namespace(f"ours{workers}"))
            ensure_topics(ours_settings)
            started = time.perf_counter()
            code = run_ingest(ours_settings, str(jsonl), progress=False, out=io.StringIO(), err=sys.stderr,
                              workers=None if workers == "auto" else int(workers))
            ours[workers] = n / (time.perf_counter() - started)
            if code != 0:
                print(f"careledger ingest exited {code}", file=sys.stderr)
                return 1
        raw_rate = n / raw_s
        auto = workers_for(settings, str(jsonl))
        print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}")
        print(f"events: {n:,} ({jsonl.stat().st_size / n:.0f} bytes/event on average)")
        print(f"raw kafka-python producer:            {raw_rate:>10,.0f} events/s ({raw_s:.1f} s)")
        for workers, rate in ours.items():
            label = f"auto={auto}" if workers == "auto" else workers
            print(f"careledger ingest --workers {label:<7}  {rate:>10,.0f} events/s, "
                  f"ratio careledger/raw: {rate / raw_rate:.0%} (goal >= 80%)")
        print(f"reproduce: .venv/bin/python bench/ingest.py --events {args.events} --persons {args.persons} "
              f"--workers {' '.join(args.workers)}")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
