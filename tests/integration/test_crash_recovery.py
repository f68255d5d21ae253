"""Effectively-once under SIGKILL: a worker killed at random points while 200k events flow,
restarted each time, ends with read models identical, row for row, to a clean from-scratch run."""

from __future__ import annotations

import itertools
import random
import threading
import time

from producers.simulate.generator import SimConfig, generate
from tests.support.pipeline import open_test_store, publish, wait_caught_up, worker
from tests.support.reliability import record
from tests.support.servers import TestStack

EVENTS = 200_000
KILLS = 3


def test_sigkill_at_random_points_then_restart_equals_a_clean_run(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(itertools.islice(generate(SimConfig(seed=99, tail_months=12, resend_fraction=0.01)), EVENTS))
    crashed_url = f"sqlite:///{settings.home / 'crashed.sqlite3'}"
    clean_url = f"sqlite:///{settings.home / 'clean.sqlite3'}"
    crashed_store = open_test_store(settings, crashed_url)

    producer = threading.Thread(target=publish, args=(settings, events))
    producer.start()  # events keep flowing while the worker is killed

    rng = random.Random(7)
    kill_points = sorted(rng.sample(range(10_000, EVENTS - 10_000), KILLS))
    victim = worker(settings, "sql", crashed_url, "crashed").start()
    kills_done = []
    try:
        for point in kill_points:
            deadline = time.monotonic() + 600
            while sum(o + 1 for o in crashed_store.offsets().values()) < point:
                assert victim.alive(), "worker died on its own"
                assert time.monotonic() < deadline, f"no progress to {point}"
                time.sleep(0.05)
            victim.kill()
            kills_done.append(sum(o + 1 for o in crashed_store.offsets().values()))
            victim = worker(settings, "sql", crashed_url, "crashed").start()
        producer.join()
        wait_caught_up(settings, {"crashed": crashed_store}, expected_end=EVENTS, timeout=900, workers=[victim])
    finally:
        victim.stop()
        producer.join()

    clean_store = open_test_store(settings, clean_url)
    clean = worker(settings, "sql", clean_url, "clean").start()
    try:
        wait_caught_up(settings, {"clean": clean_store}, expected_end=EVENTS, timeout=900, workers=[clean])
    finally:
        clean.stop()

    assert len(kills_done) == KILLS
    crashed_rows, clean_rows = crashed_store.snapshot_rows(), clean_store.snapshot_rows()
    differences = sum(len(set(crashed_rows[t]) ^ set(clean_rows[t])) for t in clean_rows)
    record("fault", "Processor SIGKILL while 200k events flow, restarted each time",
           claim="{kills} SIGKILLs of the worker at applied positions {offsets_at_kill} while {events} events "
                 "(1% re-sent) were being published; {differences} rows differ from a clean run ({rows} rows)",
           kills=KILLS, offsets_at_kill=kills_done, events=EVENTS, differences=differences,
           rows=sum(len(v) for v in clean_rows.values()))
    for table in clean_rows:
        assert crashed_rows[table] == clean_rows[table], f"{table} differs after {KILLS} SIGKILLs at {kills_done}"
    assert len(clean_rows["ledger"]) == len({e["event_id"] for e in events})
