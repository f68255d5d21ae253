"""PostgreSQL connections dropped mid-transaction while a worker applies batches.

A thread calls ``pg_terminate_backend()`` on every connection to this test's own database (the
server is the session's; only our database's backends are touched, so no other test notices) at
random intervals while the SQL worker processes.  Each drop surfaces in the worker as a
connection error: a *transient* failure, so the batch is retried (the transaction rolled back,
or - if the commit had reached the server - its offsets make the retry a no-op).  Afterwards the
read models equal a clean run, row for row.
"""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support.pipeline import open_test_store, publish, tail, wait_caught_up, worker
from tests.support.reliability import (
    clean_run,
    diff_snapshots,
    event_differences,
    offsets_sum,
    record,
    sample_events,
)
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration

KILL_ROUNDS = 12


def test_postgres_connections_terminated_mid_transaction_equal_clean_run(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    pg_url = stack.fresh_pg_url()
    database = make_url(pg_url).database
    events = sample_events(persons=1500, seed=24, resend_fraction=0.01)
    store = open_test_store(settings, pg_url)
    chunks = [events[i:i + 1000] for i in range(0, len(events), 1000)]
    publish(settings, chunks[0])
    victim = worker(settings, "sql", pg_url, "pg").start()

    stop = threading.Event()
    figures = {"rounds": 0, "backends_terminated": 0, "in_transaction": 0, "offsets_at_kill": []}

    def killer() -> None:
        rng = random.Random(5)
        with psycopg.connect(host="127.0.0.1", port=stack.postgres.port, user=make_url(pg_url).username,
                             dbname="postgres", autocommit=True) as admin:
            while not stop.is_set() and figures["rounds"] < KILL_ROUNDS:
                time.sleep(rng.uniform(0.3, 1.5))
                rows = admin.execute(
                    "SELECT pid, state, pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                    (database,)).fetchall()
                if not rows:
                    continue
                figures["rounds"] += 1
                figures["backends_terminated"] += sum(1 for _, _, ok in rows if ok)
                figures["in_transaction"] += sum(1 for _, state, _ in rows if state in ("active", "idle in transaction"))

    thread = threading.Thread(target=killer, daemon=True)
    try:
        deadline = time.monotonic() + 300
        while offsets_sum(store) == 0:  # let the worker start applying first
            assert time.monotonic() < deadline, f"worker made no progress:\n{tail(victim.log_path)}"
            time.sleep(0.2)
        thread.start()
        for chunk in chunks[1:]:  # events keep arriving while connections are dropped
            publish(settings, chunk)
            time.sleep(0.5)
        thread.join(timeout=300)
        stop.set()
        waited = wait_caught_up(settings, {"pg": store}, expected_end=len(events), timeout=600, workers=[victim])
    finally:
        stop.set()
        victim.stop()
    log = tail(victim.log_path, 5000)
    reference = clean_run(settings, stack.fresh_pg_url())
    got, want = store.snapshot_rows(), reference.snapshot_rows()
    assert len(want["ledger"]) == len({e["event_id"] for e in events}), "the reference itself is incomplete"
    differences = diff_snapshots(got, want)
    record("fault", "PostgreSQL connections terminated mid-transaction",
           claim="{rounds} rounds of pg_terminate_backend() on the worker's database ({backends_terminated} "
                 "backends, {in_transaction} of them inside a query or transaction); {retries_logged} batch "
                 "retries; {differences} rows differ from a clean run",
           rounds=figures["rounds"], backends_terminated=figures["backends_terminated"],
           in_transaction=figures["in_transaction"], events=len(events), retries_logged=log.count("retrying in"),
           worker_restarts=log.count("[supervise]"), catch_up_s=round(waited, 1),
           differences=sum(differences.values()))
    assert figures["rounds"] == KILL_ROUNDS
    noteworthy = [line for line in log.splitlines()
                  if any(w in line.lower() for w in ("poison", "dead", "skipp", "error", "retry"))]
    assert differences == {t: 0 for t in differences}, (differences, event_differences(got, want), noteworthy[-40:])
