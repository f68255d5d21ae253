"""The Kafka broker SIGKILLed and restarted: during an ingest, and while a worker processes.

These tests run on a PRIVATE broker (``tests.support.reliability.private_kafka``: its own home,
ports and data directory), not the session's shared one: killing the shared broker would be safe
only if every later test waited for its restart, and a failed restart would take the rest of the
suite down with it.  The private broker costs ~10 s of start-up and keeps the blast radius here.

- ingest: ``careledger ingest -`` runs as a subprocess fed through its standard input, so the
  kills land mid-ingest for sure (lines are written while the broker is down); after the run the
  events topic holds every valid line exactly once (distinct event_ids = valid lines, and no
  message twice: the idempotent producer's retries are de-duplicated by the broker).
- processing: a supervised SQL worker keeps consuming while the broker is killed and restarted;
  it recovers on its own and the read models equal a clean run, row for row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.pipeline import REPO_ROOT, open_test_store, publish, tail, wait_caught_up, worker
from tests.support.reliability import (
    clean_run,
    dead_letters,
    diff_snapshots,
    end_offsets,
    offsets_sum,
    private_kafka,
    record,
    sample_events,
    topic_records,
)

pytestmark = pytest.mark.integration

DOWN_S = 4.0  # how long the broker stays dead before the restart


def _wait(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_broker_sigkill_during_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    events = sample_events(persons=1500, seed=21)
    bad_lines = [b"{not json", b"\xff\xfe not utf-8", b'{"event_id": "x", "type": "nope"}']
    lines = [json.dumps(e, ensure_ascii=False).encode() for e in events]
    for i, bad in enumerate(bad_lines):  # poison between valid lines
        lines.insert((i + 1) * len(lines) // (len(bad_lines) + 1), bad)
    thirds = [len(lines) // 3, 2 * len(lines) // 3, len(lines)]

    with private_kafka(tmp_path / "home") as (broker, settings):
        out_path, err_path = tmp_path / "ingest.out", tmp_path / "ingest.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "careledger.cli", "ingest", "-"], cwd=REPO_ROOT,
                env={**os.environ, **settings.to_env()}, stdin=subprocess.PIPE, stdout=out, stderr=err,
            )
        assert proc.stdin is not None
        offsets_at_kill: list[int] = []
        writing_at_kill: list[bool] = []
        restart_s: list[float] = []

        def feed(chunk: list[bytes]) -> None:  # paced: ~1000 lines/s, so a kill lands mid-stream
            for start in range(0, len(chunk), 100):
                proc.stdin.write(b"\n".join(chunk[start:start + 100]) + b"\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                time.sleep(0.1)

        try:
            low = 0
            for phase, high in enumerate(thirds):
                writer = threading.Thread(target=feed, args=(lines[low:high],))
                writer.start()
                if phase < len(thirds) - 1:
                    threshold = low + (high - low) // 3
                    _wait(lambda t=threshold: end_offsets(settings) >= t, 120, "ingest progress")
                    offsets_at_kill.append(end_offsets(settings))
                    writing_at_kill.append(writer.is_alive())
                    broker.kill()
                    time.sleep(DOWN_S)  # the ingest keeps reading lines and buffering meanwhile
                    restart_s.append(round(broker.start(), 1))
                writer.join()
                low = high
            proc.stdin.close()
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        summary = out_path.read_text(errors="replace") + err_path.read_text(errors="replace")
        assert code == 2, f"ingest exit {code} (2 = some lines rejected, as planned):\n{summary}"

        on_topic = topic_records(settings, settings.topics.events)
        ids = [json.loads(r.value)["event_id"] for r in on_topic]
        valid = len({e["event_id"] for e in events})
        dlq = dead_letters(settings)
    record("fault", "Kafka broker SIGKILL during `careledger ingest`",
           claim="{kills} SIGKILLs of the broker mid-ingest ({down_s:.0f} s down each); {distinct_on_topic} of "
                 "{valid_lines} valid lines on the topic, {duplicates_on_topic} duplicates, {lost} lost",
           kills=len(offsets_at_kill), offsets_at_kill=offsets_at_kill, lines_still_being_written_at_kill=writing_at_kill,
           down_s=DOWN_S, broker_restart_s=restart_s, valid_lines=valid,
           messages_on_topic=len(ids), distinct_on_topic=len(set(ids)), duplicates_on_topic=len(ids) - len(set(ids)),
           lost=valid - len(set(ids) & {e["event_id"] for e in events}), rejected_lines=len(dlq), exit_code=code)
    assert len(offsets_at_kill) == 2
    assert set(ids) == {e["event_id"] for e in events}, "events lost or invented"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} messages written twice"
    assert len(dlq) == len(bad_lines)


def test_broker_sigkill_during_processing_worker_recovers_and_equals_clean_run(tmp_path: Path) -> None:
    events = sample_events(persons=1500, seed=22, resend_fraction=0.01)
    with private_kafka(tmp_path / "home") as (broker, settings):
        url = f"sqlite:///{settings.home / 'faulted.sqlite3'}"
        store = open_test_store(settings, url)
        chunks = [events[i:i + 500] for i in range(0, len(events), 500)]
        publish(settings, chunks[0])
        victim = worker(settings, "sql", url, "faulted").start()

        def keep_publishing() -> None:  # events keep flowing, so the kills land mid-processing
            for chunk in chunks[1:]:
                while True:
                    try:
                        publish(settings, chunk)
                        break
                    except Exception:  # noqa: BLE001 - the broker is dead right now: send again
                        time.sleep(1)
                time.sleep(0.3)

        producer = threading.Thread(target=keep_publishing)
        offsets_at_kill: list[int] = []
        restart_s: list[float] = []
        try:
            _wait(lambda: offsets_sum(store) > 0, 300, "the worker's first batch")
            producer.start()
            for point in (len(events) // 4, len(events) // 2):
                _wait(lambda p=point: offsets_sum(store) >= p, 300, f"worker progress to {point}")
                offsets_at_kill.append(offsets_sum(store))
                broker.kill()
                time.sleep(DOWN_S)
                restart_s.append(round(broker.start(), 1))
            producer.join()
            waited = wait_caught_up(settings, {"faulted": store}, expected_end=len(events), timeout=600,
                                    workers=[victim])
        finally:
            victim.stop()
            if producer.is_alive():
                producer.join()
        log = tail(victim.log_path, 400)
        restarts = log.count("[supervise]")
        reference = clean_run(settings, f"sqlite:///{settings.home / 'clean.sqlite3'}")
        got, want = store.snapshot_rows(), reference.snapshot_rows()
    differences = diff_snapshots(got, want)
    record("fault", "Kafka broker SIGKILL while a worker processes",
           claim="{kills} SIGKILLs of the broker at applied offsets {offsets_at_kill}; worker restarts by its "
                 "supervisor: {worker_restarts}; caught up {catch_up_s:.0f} s after the last publish; "
                 "{differences} rows differ from a clean run",
           kills=len(offsets_at_kill), offsets_at_kill=offsets_at_kill, broker_restart_s=restart_s, events=len(events),
           worker_restarts=restarts, catch_up_s=round(waited, 1), differences=sum(differences.values()),
           rows=sum(len(v) for v in want.values()))
    assert differences == {t: 0 for t in differences}, differences
    assert len(want["ledger"]) == len({e["event_id"] for e in events})
