"""``careledger ingest PATH|-``: validate JSON Lines and publish them.

Each line is handled on its own: invalid JSON, invalid UTF-8, an over-long line or an invalid event
is rejected with "line N: field: reason" (dead-letter topic + report) and never stops the lines
around it.  Blank lines are ignored.  Exit 0 when nothing was rejected, 2 otherwise, 1 when the
run itself failed (file unreadable, Kafka unreachable or not acknowledging).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import IO

from tqdm import tqdm

from careledger.settings import Settings
from producers.ingest_workers import WorkerArgs, ingest_in_workers
from producers.line_check import MAX_LINE_BYTES, Numbered, check_line, rejected_record
from producers.pipeline import IngestRun, ReportWriter, input_rules
from producers.pseudonym import Pseudonymiser
from producers.publisher import EventPublisher, PublishError
from producers.state_errors import state_error_message, state_write_error

_CHUNK = 64 * 1024
CHUNK_LINES = 2000  # lines per unit of work (a worker's task; a progress-bar step)
PARALLEL_MIN_BYTES = 16 * 1024 * 1024  # "auto" uses worker processes from this file size on


def iter_lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None, int]]:
    """Yield (line number, line without its newline or None if longer than ``limit``, bytes read).

    Never holds more than ``limit`` bytes of one line in memory."""
    number = 0
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        number += 1
        consumed = len(chunk)
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            while True:  # skip the rest of the over-long line
                rest = stream.readline(_CHUNK)
                consumed += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None, consumed
            continue
        yield number, chunk.rstrip(b"\r\n"), consumed


def chunked(lines: Iterable[Numbered], size: int) -> Iterator[list[Numbered]]:
    it = iter(lines)
    while chunk := list(islice(it, size)):
        yield chunk


def ingest_stream(stream: IO[bytes], run: IngestRun, progress: tqdm | None = None,
                  limit: int = MAX_LINE_BYTES, workers: int = 0, args: WorkerArgs | None = None) -> list[str]:
    """Check and publish every line, here (``workers`` 0) or in ``workers`` processes that each
    check, seal and send a share (``producers.ingest_workers``; ``args`` says how to start them).
    A person's events keep their order either way.  Returns the workers' failed sends."""
    chunks = chunked(iter_lines(stream, limit), CHUNK_LINES)

    def done(chunk: list[Numbered]) -> None:
        if progress is not None:
            progress.update(sum(consumed for _, _, consumed in chunk))

    if workers > 0:
        if args is None:
            raise ValueError("ingest_stream: worker processes need their WorkerArgs")
        return ingest_in_workers(chunks, run, args, workers, done)
    for chunk in chunks:
        for number, line, consumed in chunk:
            outcome = check_line(number, line, consumed, run.pseudonymiser, limit, run.rules)
            if outcome is not None:
                run.take(number, outcome, partial(rejected_record, number, line, consumed))
        done(chunk)
    return []


def workers_for(settings: Settings, path: str, requested: int | None = None) -> int:
    """Worker processes for one ingest: ``requested`` (``--workers``) or the setting; "auto"
    gives one per core (on 2 cores, 1M events, each run paired with a raw one, 2 and 3 workers
    were within the machine's noise of each other, 80-101 % and 82-92 % of the raw producer: a
    third process adds memory and scheduling, not a core) for a file large enough to repay their
    start (about a second), and none for standard input."""
    count = requested if requested is not None else settings.ingest_workers
    if count is not None:
        return count
    if path == "-" or Path(path).stat().st_size < PARALLEL_MIN_BYTES:
        return 0
    return os.cpu_count() or 1


def run_ingest(settings: Settings, path: str, *, dry_run: bool = False, progress: bool | None = None,
               max_line_bytes: int = MAX_LINE_BYTES, workers: int | None = None, out: IO[str] = sys.stdout,
               err: IO[str] = sys.stderr) -> int:
    """The command body; returns the exit code (1, with one clear line, when the state directory
    is full or read-only: the key store, secrets and reports live there).  ``workers``: checking
    processes (None: ``settings.ingest_workers``, see :func:`workers_for`)."""
    try:
        return _run_ingest(settings, path, dry_run=dry_run, progress=progress, max_line_bytes=max_line_bytes,
                           workers=workers, out=out, err=err)
    except Exception as exc:
        reason = state_write_error(exc)
        if reason is None:
            raise
        print(state_error_message("ingest", settings.home, reason), file=err)
        return 1


def _run_ingest(settings: Settings, path: str, *, dry_run: bool, progress: bool | None,
                max_line_bytes: int, workers: int | None, out: IO[str], err: IO[str]) -> int:
    source = "-" if path == "-" else str(Path(path))
    try:
        stream: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"ingest: cannot open {path}: {exc.strerror}", file=err)
        return 1
    total = None if path == "-" else Path(path).stat().st_size
    publisher = None
    report = None
    try:
        if not dry_run:
            try:
                publisher = EventPublisher(settings)
            except Exception as exc:  # noqa: BLE001 - any client error means "cannot reach Kafka"
                print(f"ingest: cannot connect to Kafka at {settings.kafka_bootstrap}: {exc}", file=err)
                return 1
        report = ReportWriter(settings, "ingest")
        run = IngestRun(Pseudonymiser.from_settings(settings), publisher, report, source, input_rules(settings))
        # None lets tqdm decide (shown on a terminal only); stdin has no size to measure against.
        disable = True if path == "-" or progress is False else (False if progress else None)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="ingest", file=err, disable=disable,
                   leave=False)
        args = WorkerArgs(settings, run.pseudonymiser.secret, max_line_bytes, run.rules, publish=not dry_run)
        try:
            failures = ingest_stream(stream, run, bar, max_line_bytes, workers_for(settings, path, workers), args)
        finally:
            bar.close()
        try:
            if publisher is not None:
                publisher.flush()
        except PublishError as exc:
            failures = failures + exc.failures
        if failures:
            for line in run.summary_lines():
                print(line, file=out)
            print(f"ingest: {PublishError(failures)}. Re-running the same file is safe (events are identified "
                  "by event_id).", file=err)
            return 1
        for line in run.summary_lines():
            print(line, file=out)
        if dry_run:
            print("dry run: nothing was published", file=out)
        return 0 if run.stats.rejected == 0 else 2
    finally:
        close_run(report, publisher, stream)


def close_run(report: ReportWriter | None, publisher: EventPublisher | None, source: IO[bytes]) -> None:
    """End an ingest-like run whatever happened: close the report (a disk-full error is raised
    last, after the publisher had its chance to deliver), close the publisher (its failures were
    already reported by the run's own flush), and close the input unless it is stdin."""
    report_error = None
    if report is not None:
        try:
            report.close()
        except OSError as exc:
            report_error = exc
    if publisher is not None:
        try:
            publisher.close()
        except PublishError:
            pass
    if source is not sys.stdin.buffer:
        source.close()
    if report_error is not None:
        raise report_error
