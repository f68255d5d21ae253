"""How fast could a validating ingest be on this machine?  An upper bound, next to the raw producer.

Issue #3 asks for >= 80 % of the raw kafka-python producer.  ``careledger ingest`` checks lines in
worker processes and sends from one process (input order kept, sealing, erasures, de-duplication
there); that one process is its bottleneck.  This script measures the best any design could do
with the same line check: N processes that each take chunks of lines round-robin, run
``producers.line_check.check_line`` and send with a producer of their own.  It ignores what a real
ingest must add - a person's events in order (so routing by key), sealing, erasures, in-run
de-duplication, the report - so it is a ceiling, not a design.

    .venv/bin/python bench/ingest_ceiling.py                      # 150k events, 2 and 3 processes
    .venv/bin/python bench/ingest_ceiling.py --events 1000000 --processes 2 3 4

Prints events/s per variant and its ratio to the raw producer measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, temp_stack  # noqa: E402
from bench.ingest import raw_publish  # noqa: E402
from careledger.settings import Settings, Topics  # noqa: E402
from infra.kafka_broker import ensure_topics  # noqa: E402
from producers.publisher import PRODUCER_DEFAULTS  # noqa: E402
from producers.simulate.generator import SimConfig, generate  # noqa: E402
from schemas.validation import partition_key  # noqa: E402

CHUNK = 2000
BENCH_HMAC_KEY = b"k" * 32  # a fixed key: pseudonyms are not the point here


def _check_and_send(settings: Settings, inbox: Any, results: Any, check: bool) -> None:
    from kafka import KafkaProducer

    from producers.line_check import check_line
    from producers.pseudonym import Pseudonymiser

    pseudonymiser = Pseudonymiser(BENCH_HMAC_KEY)
    producer = KafkaProducer(**settings.kafka_client_options(), **{**PRODUCER_DEFAULTS, "client_id": "ceiling"})
    results.put("ready")
    sent = 0
    while (chunk := inbox.get()) is not None:
        for number, (key, line) in chunk:
            if check:
                outcome = check_line(number, line, len(line), pseudonymiser)
                if not isinstance(outcome, tuple):
                    continue  # rejected or blank: the bench input has none
                key, line = outcome[1].encode(), outcome[2]
            producer.send(settings.topics.events, key=key, value=line)
            sent += 1
    producer.flush()
    producer.close()
    results.put(sent)


def parallel_publish(settings: Settings, lines: list[bytes], keys: list[bytes], processes: int, check: bool) -> float:
    """Seconds for ``processes`` processes to (check and) send every line, from their first chunk."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    inboxes = [context.Queue(maxsize=8) for _ in range(processes)]
    workers = [context.Process(target=_check_and_send, args=(settings, inbox, results, check)) for inbox in inboxes]
    for worker in workers:
        worker.start()
    for _ in workers:
        results.get()  # every producer connected: the clock starts with the first chunk
    started = time.perf_counter()
    numbered = list(enumerate(zip(keys, lines, strict=True), start=1))
    for index, start in enumerate(range(0, len(numbered), CHUNK)):
        inboxes[index % processes].put(numbered[start:start + CHUNK])
    for inbox in inboxes:
        inbox.put(None)
    sent = sum(results.get() for _ in workers)
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    if sent != len(lines):
        raise SystemExit(f"{sent} of {len(lines)} events sent: the bench input should have no rejects")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--persons", type=int, default=None, help="default: events / 9")
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args()

    # the shared private broker; its home (with every topic's data) is removed at the end
    with temp_stack(postgres=False) as stack:
        settings = stack.settings
        persons = args.persons or max(1, args.events // 9)
        print(f"generating {args.events:,} simulated events ...", file=sys.stderr)
        events = list(itertools.islice(generate(SimConfig(persons=persons, seed=1)), args.events))
        lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in events]
        keys = [partition_key(e).encode() for e in events]
        del events

        def on_topic(label: str) -> Settings:
            scoped = dataclasses.replace(settings, topics=Topics.with_namespace(label))
            ensure_topics(scoped)
            return scoped

        n = len(lines)
        raw_rate = n / raw_publish(on_topic("raw"), lines, keys)
        rows = [("raw kafka-python producer, 1 process", raw_rate)]
        for processes in args.processes:
            for check in (False, True):
                label = f"{processes} processes, {'check + send' if check else 'send only'}"
                seconds = parallel_publish(on_topic(f"p{processes}{'c' if check else 's'}"), lines, keys, processes, check)
                rows.append((label, n / seconds))
        print(f"machine: {machine()}")
        print(f"events: {n:,}")
        for label, rate in rows:
            print(f"{label:<40} {rate:>10,.0f} events/s  ratio to raw: {rate / raw_rate:.0%}")
        print(f"reproduce: .venv/bin/python bench/ingest_ceiling.py --events {args.events} --persons {persons} "
              f"--processes {' '.join(map(str, args.processes))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
