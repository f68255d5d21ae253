"""Disk full and read-only state: a clear error, a non-zero exit (or a visible wait), no corruption.

The "disk" is a tiny tmpfs mounted for the test (``mount -t tmpfs -o size=...``; root is needed -
the test is skipped with the reason when mounting fails).  ``chmod 0555`` would prove nothing here:
the tests run as root, who writes through it.  Kafka, PostgreSQL and ClickHouse are the session's
and are not disturbed; only the state written by careledger itself lands on the tiny filesystem.

- ``careledger ingest`` with ``CARELEDGER_HOME`` on a full filesystem, then on a read-only one:
  exit code 1, one clear line naming the problem, no Python traceback.
- a worker whose SQLite projection fills its filesystem: it does not crash-loop nor corrupt the
  store - the failing batch is rolled back and retried (a transient error, logged as "disk is
  full"); meanwhile ``PRAGMA integrity_check`` is ok and the store equals a clean run cut at the
  offsets it holds; after the filesystem is grown the worker catches up and equals a clean run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pipeline import REPO_ROOT, open_test_store, publish, tail, wait_caught_up, worker
from tests.support.reliability import clean_run, diff_snapshots, offsets_sum, record, sample_events
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def tiny_fs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write a filler file until the filesystem is full; return bytes written."""
    written = 0
    try:
        with open(path / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
                written += 4096
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    return written


def ingest(settings, path: Path) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "careledger.cli", "ingest", str(path)], cwd=REPO_ROOT,
                          env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=300)


def test_ingest_on_a_full_then_read_only_state_directory_fails_clearly(stack: TestStack, tmp_path: Path) -> None:
    base = stack.fresh_settings()
    events = sample_events(persons=300, seed=25)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    half = len(events) // 2
    first.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events[:half]))
    second.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events[half:])
                      + "{broken line\n")  # a reject: the report file must be written too
    results = {}
    with tiny_fs(tmp_path / "state", "16m") as state:
        settings = dataclasses.replace(base, home=state)
        ok = ingest(settings, first)  # creates the secrets, key store and report under the home
        assert ok.returncode == 0, ok.stdout + ok.stderr
        filler = fill(state)
        results["full"] = ingest(settings, second)
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        results["read-only"] = ingest(settings, second)
    for name, done in results.items():
        message = (done.stderr + done.stdout).strip()
        assert done.returncode == 1, f"{name}: exit {done.returncode}\n{message}"
        assert "Traceback" not in message, f"{name}: a traceback instead of a clear error:\n{message}"
        assert any(word in message.lower() for word in ("no space left", "disk is full", "read-only")), message
    record("fault", "State directory full, then read-only, under `careledger ingest`",
           claim="exit codes {exit_full} (full) and {exit_read_only} (read-only), one clear error line each, "
                 "no traceback",
           filler_bytes=filler, exit_full=results["full"].returncode,
           exit_read_only=results["read-only"].returncode,
           error_full=results["full"].stderr.strip().splitlines()[-1].replace(str(state), "$CARELEDGER_HOME")[:110],
           error_read_only=results["read-only"].stderr.strip().splitlines()[-1].replace(str(state),
                                                                                        "$CARELEDGER_HOME")[:110])


def test_worker_filling_its_sqlite_disk_waits_without_corruption_then_catches_up(
        stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings(batch_size=500)  # several batches fit before the disk is full
    events = sample_events(persons=1500, seed=26, resend_fraction=0.01)
    publish(settings, events)
    with tiny_fs(tmp_path / "db", "4m") as db_dir:
        db_path = db_dir / "projections.sqlite3"
        url = f"sqlite:///{db_path}"
        store = open_test_store(settings, url)
        victim = worker(settings, "sql", url, "full").start()
        try:
            deadline = time.monotonic() + 300
            while "full" not in tail(victim.log_path, 50):
                assert time.monotonic() < deadline, f"the disk never filled:\n{tail(victim.log_path)}"
                assert offsets_sum(store) < len(events), "all events fitted: make the filesystem smaller"
                time.sleep(0.5)
            time.sleep(3)  # a retry or two
            stuck_at = store.offsets()
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
                integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            partial = diff_snapshots(store.snapshot_rows(), clean_run(
                settings, f"sqlite:///{settings.home / 'clean-partial.sqlite3'}", upto=stuck_at).snapshot_rows())
            assert victim.alive()
            subprocess.run(["mount", "-o", "remount,size=256m", str(db_dir)], check=True)
            waited = wait_caught_up(settings, {"full": store}, expected_end=len(events), timeout=600,
                                    workers=[victim])
        finally:
            victim.stop()
        log = tail(victim.log_path, 5000)
        final = diff_snapshots(store.snapshot_rows(),
                               clean_run(settings, f"sqlite:///{settings.home / 'clean.sqlite3'}").snapshot_rows())
        store.close()
    record("fault", "SQLite projection's filesystem full under a running worker",
           claim="filled at {applied_when_full} of {events} events: integrity_check {integrity}, {partial_differences} "
                 "rows differ from a clean run cut at the stored offsets; {retries_logged} retries, "
                 "{worker_restarts} restarts; after growing the filesystem caught up in {catch_up_s:.0f} s, "
                 "{differences} rows differ from a clean run",
           events=len(events), applied_when_full=sum(o + 1 for o in stuck_at.values()), integrity=integrity,
           partial_differences=sum(partial.values()), retries_logged=log.count("retrying in"),
           disk_full_messages=log.count("full"), worker_restarts=log.count("[supervise]"),
           catch_up_s=round(waited, 1), differences=sum(final.values()))
    assert integrity == "ok"
    assert 0 < sum(o + 1 for o in stuck_at.values()) < len(events)
    assert partial == {t: 0 for t in partial}, partial
    assert final == {t: 0 for t in final}, final
