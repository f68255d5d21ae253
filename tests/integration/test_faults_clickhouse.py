"""ClickHouse stopped mid-run while a SQL worker and a ClickHouse worker consume the same topic.

The ClickHouse server here is a PRIVATE one (its own home and port under ``tmp_path``), started
for this test and stopped at its end: stopping the session's shared server would make any later
test that uses ``clickhouse_url`` depend on our restart.  Kafka and the SQLite SQL store are the
session's (they are not disturbed).

The server is down for ``PAUSE_S`` = 25 s (the issue says "a minute"; 25 s shows the same thing:
the ClickHouse worker's batch is retried with capped backoff, while the SQL worker, in its own
consumer group, keeps its lag at 0; ``CARELEDGER_CH_PAUSE_S=60`` runs the full minute).
After the restart the ClickHouse store catches up and equals a clean run (and so does SQL).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest

from infra.clickhouse_server import ClickHouseServer
from processors.lag import LagProbe
from tests.support.pipeline import around, open_test_store, publish, tail, wait_caught_up, worker
from tests.support.reliability import clean_run, diff_snapshots, offsets_sum, record, sample_events
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration


def _run(stack: TestStack, tmp_path: Path, pause_s: float) -> None:
    settings = stack.fresh_settings()
    server = ClickHouseServer(dataclasses.replace(settings, home=tmp_path / "clickhouse-home"))
    server.start()
    try:
        _scenario(settings, server, pause_s)
    finally:
        server.stop()


def _scenario(settings, server: ClickHouseServer, pause_s: float) -> None:  # noqa: ANN001
    events = sample_events(persons=1500, seed=23, resend_fraction=0.01)
    sql_url, ch_url = settings.sql_url, server.url("faulted")
    sql_store, ch_store = open_test_store(settings, sql_url), open_test_store(settings, ch_url)
    half = len(events) // 2
    publish(settings, events[:half])
    sql_worker = worker(settings, "sql", sql_url, "sql").start()
    ch_worker = worker(settings, "clickhouse", ch_url, "ch").start()
    try:
        deadline = time.monotonic() + 300
        while offsets_sum(ch_store) < half // 3:
            assert time.monotonic() < deadline, "ClickHouse worker made no progress"
            time.sleep(0.2)
        ch_at_stop = offsets_sum(ch_store)
        server.stop()
        stopped_at = time.monotonic()
        producer = threading.Thread(target=publish, args=(settings, events[half:]))
        producer.start()  # the rest of the events arrive while ClickHouse is down
        producer.join()
        sql_caught_up_s = wait_caught_up(settings, {"sql": sql_store}, expected_end=len(events), timeout=300,
                                         workers=[sql_worker]) + (time.monotonic() - stopped_at)
        assert time.monotonic() - stopped_at < pause_s, "SQL took longer to catch up than the pause"
        probe = LagProbe(settings, {"sql": sql_store})
        sql_lag_samples = []
        try:
            while time.monotonic() - stopped_at < pause_s:
                sql_lag_samples.append(probe.measure().per_projection["sql"])
                time.sleep(1.0)
        finally:
            probe.close()
        assert ch_worker.alive(), "the ClickHouse worker's supervisor died"
        server.start()
        down_s = time.monotonic() - stopped_at
        ch_catch_up_s = wait_caught_up(settings, {"sql": sql_store, "clickhouse": ch_store},
                                       expected_end=len(events), timeout=600, workers=[sql_worker, ch_worker])
    finally:
        sql_worker.stop()
        ch_worker.stop()
    ch_log = tail(ch_worker.log_path, 2000)
    ch_reference = clean_run(settings, server.url("clean"))
    sql_reference = clean_run(settings, f"sqlite:///{settings.home / 'clean.sqlite3'}")
    ch_diff = diff_snapshots(ch_store.snapshot_rows(), ch_reference.snapshot_rows())
    sql_diff = diff_snapshots(sql_store.snapshot_rows(), sql_reference.snapshot_rows())
    record("fault", f"ClickHouse stopped {pause_s:.0f} s mid-run",
           claim="ClickHouse down {down_s:.0f} s from applied offset {clickhouse_offset_at_stop}: SQL lag "
                 "{sql_lag_max_while_down} at most once caught up ({sql_lag_samples} samples) while "
                 "ClickHouse was down; ClickHouse caught up {clickhouse_catch_up_s:.0f} s after its restart; "
                 "{differences} rows differ from a clean run",
           down_s=round(down_s, 1), clickhouse_offset_at_stop=ch_at_stop, events=len(events),
           sql_caught_up_after_stop_s=round(sql_caught_up_s, 1), sql_lag_samples=len(sql_lag_samples),
           sql_lag_max_while_down=max(sql_lag_samples, default=-1),
           clickhouse_retries_logged=ch_log.count("retrying in"), clickhouse_worker_restarts=ch_log.count("[supervise]"),
           clickhouse_catch_up_s=round(ch_catch_up_s, 1),
           differences=sum(ch_diff.values()) + sum(sql_diff.values()))
    assert sql_lag_samples and max(sql_lag_samples) == 0, sql_lag_samples
    # the outage is waited out inside the worker (batch retried, lag timer skipped), not by crashing
    assert ch_log.count("[supervise]") == 0, around(ch_log, "[supervise]")
    assert ch_diff == {t: 0 for t in ch_diff}, ch_diff
    assert sql_diff == {t: 0 for t in sql_diff}, sql_diff
    assert len(ch_reference.snapshot_rows()["events"]) == len({e["event_id"] for e in events})


def test_clickhouse_down_sql_stays_current_clickhouse_catches_up(stack: TestStack, tmp_path: Path) -> None:
    _run(stack, tmp_path, pause_s=float(os.environ.get("CARELEDGER_CH_PAUSE_S", "25")))


def test_worker_started_while_clickhouse_is_down_waits_for_it(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    server = ClickHouseServer(dataclasses.replace(settings, home=tmp_path / "clickhouse-home"))
    server.start()
    url = server.url("late")
    server.stop()  # the database is created but the server is down when the worker starts
    events = sample_events(persons=200, seed=29)
    publish(settings, events)
    ch_worker = worker(settings, "clickhouse", url, "late").start()
    try:
        deadline = time.monotonic() + 120
        while "store clickhouse unavailable" not in tail(ch_worker.log_path, 200):
            assert ch_worker.alive(), tail(ch_worker.log_path)
            assert time.monotonic() < deadline, tail(ch_worker.log_path)
            time.sleep(0.5)
        time.sleep(5)  # a few retries while it stays down
        server.start()
        ch_store = open_test_store(settings, url)
        wait_caught_up(settings, {"clickhouse": ch_store}, expected_end=len(events), timeout=300,
                       workers=[ch_worker])
        applied = ch_store.snapshot_rows()
        reference = clean_run(settings, server.url("reference")).snapshot_rows()
    finally:
        ch_worker.stop()
        server.stop()
    log = tail(ch_worker.log_path, 2000)
    assert log.count("[supervise]") == 0, around(log, "[supervise]")  # waited out, not restarted
    assert "Traceback (most recent call last)" not in log.replace('"exc": "Traceback', "")
    assert log.count("store clickhouse unavailable") >= 2
    assert diff_snapshots(applied, reference) == {table: 0 for table in applied}
