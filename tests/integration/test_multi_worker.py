"""Scale-out: three ``careledger process --projection sql`` workers in ONE consumer group over
PostgreSQL.  One is SIGKILLed mid-stream; the group rebalances its partitions onto the other two,
which resume from the offsets the store committed with the read model.  The read models must equal
a clean single-worker run, row for row (docs/operations.md, "Scale-out invariants")."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time

from kafka import KafkaProducer

from producers.publisher import PRODUCER_DEFAULTS, encode
from producers.simulate.generator import SimConfig, generate
from schemas.validation import partition_key
from tests.support.pipeline import WorkerProcess, open_test_store, tail, wait_caught_up, worker
from tests.support.reliability import record
from tests.support.servers import TestStack

EVENTS = 60_000


def publish_raw(settings, events) -> None:  # noqa: ANN001
    """Straight onto the log, keyed like the producer (the events are valid simulator output)."""
    producer = KafkaProducer(**settings.kafka_client_options(), **PRODUCER_DEFAULTS)
    for event in events:
        producer.send(settings.topics.events, key=partition_key(event).encode(), value=encode(event))
    producer.flush()
    producer.close()


def _assigned_counts(w: WorkerProcess) -> list[int]:
    """Partitions per assignment the worker logged ("assigned N partitions ..."), in order."""
    counts = []
    if w.log_path.exists():
        for line in w.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                msg = json.loads(line).get("msg", "")
                if msg.startswith("assigned "):
                    counts.append(int(msg.split()[1]))
    return counts


def test_three_workers_one_killed_equal_a_clean_single_worker_run(stack: TestStack) -> None:
    # a short session timeout so the group notices the SIGKILLed member quickly
    settings = dataclasses.replace(stack.fresh_settings(), session_timeout_s=8.0, batch_size=1000)
    events = list(itertools.islice(generate(SimConfig(seed=21, tail_months=6, resend_fraction=0.01)), EVENTS))
    shared_url = stack.fresh_pg_url()
    shared = open_test_store(settings, shared_url)
    group = f"{settings.processor_group}-shared"
    workers = [WorkerProcess(settings, "sql", shared_url, group, settings.home / "logs" / f"shared-{i}.log")
               for i in range(3)]
    for w in workers:
        w.start()
    try:
        # all three own partitions before events flow (12 partitions: 4 each once settled)
        deadline = time.monotonic() + 180
        while not all(c and c[-1] > 0 for c in map(_assigned_counts, workers)) \
                or sum(c[-1] for c in map(_assigned_counts, workers)) != settings.event_partitions:
            for w in workers:
                assert w.alive(), f"worker died at start:\n{tail(w.log_path)}"
            assert time.monotonic() < deadline, "the three workers never shared the partitions: " + \
                str([_assigned_counts(w) for w in workers])
            time.sleep(0.5)

        producer = threading.Thread(target=publish_raw, args=(settings, events))
        producer.start()
        deadline = time.monotonic() + 600
        while sum(o + 1 for o in shared.offsets().values()) < EVENTS // 3:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.1)
        victim = workers[1]
        victim.kill()  # SIGKILL: mid-batch, no goodbye to the group
        killed_at = sum(o + 1 for o in shared.offsets().values())
        producer.join()
        survivors = [workers[0], workers[2]]
        wait_caught_up(settings, {"shared": shared}, expected_end=EVENTS, timeout=900, workers=survivors)
        # the survivors took over the victim's partitions
        assert sum(_assigned_counts(w)[-1] for w in survivors) == settings.event_partitions
    finally:
        for w in workers:
            w.stop()
    assert killed_at < EVENTS, "the kill came after the end of the stream"

    clean_url = stack.fresh_pg_url()
    clean_store = open_test_store(settings, clean_url)
    clean = worker(settings, "sql", clean_url, "clean").start()
    try:
        wait_caught_up(settings, {"clean": clean_store}, expected_end=EVENTS, timeout=900, workers=[clean])
    finally:
        clean.stop()

    got, want = shared.snapshot_rows(), clean_store.snapshot_rows()
    record("fault", "One of 3 workers (one consumer group, PostgreSQL) SIGKILLed mid-stream",
           claim="3 workers, one SIGKILLed at applied position {killed_at} of {events}; the survivors took its "
                 "partitions; {differences} rows differ from a clean single-worker run",
           killed_at=killed_at, events=EVENTS,
           differences=sum(len(set(got[t]) ^ set(want[t])) for t in want))
    for table in want:
        assert got[table] == want[table], f"{table} differs after SIGKILL of one of 3 workers at {killed_at}"
    assert len(want["ledger"]) == len({e["event_id"] for e in events})
    assert shared.offsets() == clean_store.offsets()
