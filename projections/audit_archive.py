"""Move old audit rows out of the read models' database into a compressed file the operator keeps.

The audit log grows with reads (docs/capacity.md: ~55 MB a day at a busy city) and is never pruned
by the platform: how long it is kept is the federation's policy.  ``careledger audit archive
--before DAY --out FILE`` applies that policy without losing a row:

1. read the rows written before ``DAY`` (UTC) in id order, each with the persons it named
   (``audit_subjects``), and write them as gzip-compressed JSON Lines to a new file beside ``FILE``
   (mode 0600: it says who read whose data), flushed to disk;
2. read that file back and check it holds exactly the rows read (count and ids);
3. link it to ``FILE`` - which must not exist: an archive is never overwritten - and sync the directory;
   then record the archive (day, file, rows, SHA-256) in ``audit_archives``: from now on readers of
   the audit (``/api/audit``, the person page, ``careledger audit search``) know the rows before
   that day may be in the file only;
4. only then delete the archived rows, a batch of ids per short transaction, so the API and the
   workers sharing the database wait at most one batch.

A stop before step 3 deletes nothing (the partial file is removed); a stop during step 4 leaves the
archive complete and some archived rows still in the database: the next run archives them again,
into another file (files may then overlap; ``id`` is unique across them).  Rows written later are
never touched: ``DAY`` must not be after today, and rows are written with the time they are written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from projections.audit_search import archive_rows, registered
from projections.audit_tables import audit_archives, audit_log, audit_subjects

#: rows per read and per delete transaction
BATCH = 2000

#: called after each batch with (rows done, rows in all) - the command line's progress bar
Progress = Callable[[int, int], None]


class ArchiveError(ValueError):
    """The archive cannot be made as asked (the reason says what to change); nothing was deleted."""


@dataclass(frozen=True)
class ArchiveResult:
    rows: int
    subjects: int
    first_at: str | None
    last_at: str | None
    out: Path | None  # None: a dry run, or nothing to archive
    sha256: str | None
    deleted: int


def cutoff(day: str, today: date | None = None) -> str:
    """``day`` (YYYY-MM-DD) as the bound ``audit_log.at < bound``; refused when it is after today
    (UTC): rows are being written with today's time, and an archive must not race them."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        raise ArchiveError(f"--before {day!r}: not a date (YYYY-MM-DD)") from None
    today = today or datetime.now(UTC).date()
    if parsed > today:
        raise ArchiveError(f"--before {day}: after today ({today.isoformat()}, UTC); rows of today and later "
                           "are still being written")
    return parsed.isoformat()


def count_before(engine: Engine, bound: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log).where(audit_log.c.at < bound))
                   .scalar_one())


def _batches(engine: Engine, bound: str, last_id: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """The rows before ``bound`` with their persons, in id order, ``BATCH`` at a time (keyset
    pages: memory does not grow with the archive).  ``last_id`` stops at the rows archived."""
    after = -1
    while True:
        cond = [audit_log.c.at < bound, audit_log.c.id > after]
        if last_id is not None:
            cond.append(audit_log.c.id <= last_id)
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(audit_log).where(*cond).order_by(audit_log.c.id).limit(BATCH))]
            if not rows:
                return
            named: dict[int, list[str]] = {}
            for audit_id, person in conn.execute(
                    select(audit_subjects.c.audit_id, audit_subjects.c.person_id)
                    .where(audit_subjects.c.audit_id.in_([r["id"] for r in rows]))
                    .order_by(audit_subjects.c.audit_id, audit_subjects.c.person_id)):
                named.setdefault(int(audit_id), []).append(person)
        for row in rows:
            row["subjects"] = named.get(int(row["id"]), [])
        yield rows
        after = int(rows[-1]["id"])


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Ids:
    """Rows counted and their ids digested in order: what step 2 compares between the rows written
    and the file read back."""

    def __init__(self) -> None:
        self.rows = 0
        self._digest = hashlib.sha256()

    def add(self, row_id: int) -> None:
        self._digest.update(f"{row_id}\n".encode())
        self.rows += 1

    def value(self) -> tuple[int, str]:
        return self.rows, self._digest.hexdigest()


def _read_back(path: Path) -> tuple[int, str]:
    """Step 2's reading: the :class:`_Ids` value of an archive file."""
    ids = _Ids()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            ids.add(json.loads(line)["id"])
    return ids.value()


def _write_archive(engine: Engine, bound: str, partial: Path, total: int,
                   progress: Progress | None) -> tuple[int, int, int, str | None, str | None]:
    """Steps 1-2: (rows, subjects, last id, first at, last at) written to ``partial`` and read back."""
    ids = _Ids()
    subjects = last_id = 0
    first_at = last_at = None
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for batch in _batches(engine, bound):
                for row in batch:
                    gz.write(json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
                    ids.add(row["id"])
                    subjects += len(row["subjects"])
                last_id = int(batch[-1]["id"])
                first_at = first_at or batch[0]["at"]
                last_at = batch[-1]["at"]
                if progress is not None:
                    progress(ids.rows, total)
        raw.flush()
        os.fsync(raw.fileno())
    if _read_back(partial) != ids.value():
        raise ArchiveError(f"{partial}: the file read back differs from the rows written; nothing was deleted")
    return ids.rows, subjects, last_id, first_at, last_at


def _delete_archived(engine: Engine, bound: str, last_id: int, progress: Progress | None, total: int) -> int:
    """Step 4: delete the archived rows and their persons, one short transaction per batch."""
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids: Sequence[int] = conn.scalars(select(audit_log.c.id).where(
                audit_log.c.at < bound, audit_log.c.id <= last_id).order_by(audit_log.c.id).limit(BATCH)).all()
            if not ids:
                return deleted
            conn.execute(delete(audit_subjects).where(audit_subjects.c.audit_id.in_(ids)))
            deleted += int(conn.execute(delete(audit_log).where(audit_log.c.id.in_(ids))).rowcount or 0)
        if progress is not None:
            progress(deleted, total)


def _register(engine: Engine, bound: str, out: Path, rows: int, digest: str, made_by: str | None) -> None:
    """Step 3's record of the archive: where the rows before ``bound`` went."""
    with engine.begin() as conn:
        conn.execute(insert(audit_archives).values(
            at=datetime.now(UTC).isoformat(timespec="milliseconds"), before=bound, file=str(out.resolve()),
            rows=rows, sha256=digest, made_by=made_by))


def archive(engine: Engine, before: str, out: Path | None, *, dry_run: bool = False,
            written: Progress | None = None, removed: Progress | None = None,
            today: date | None = None, made_by: str | None = None) -> ArchiveResult:
    """Archive the audit rows written before the day ``before`` into ``out`` and delete them (the
    module's steps); ``made_by``: the admin token's name, kept with the archive's record.
    ``dry_run``: count them only.  Raises :class:`ArchiveError` with nothing deleted when the
    archive cannot be made."""
    bound = cutoff(before, today)
    total = count_before(engine, bound)
    if dry_run or total == 0:
        return ArchiveResult(total, 0, None, None, None, None, 0)
    if out is None:
        raise ArchiveError("--out FILE is needed (a new file: an archive is never overwritten)")
    if out.exists():
        raise ArchiveError(f"--out {out}: exists; an archive is never overwritten (choose a new file)")
    if not out.parent.is_dir():
        raise ArchiveError(f"--out {out}: no directory {out.parent}")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        rows, subjects, last_id, first_at, last_at = _write_archive(engine, bound, partial, total, written)
        try:
            os.link(partial, out)  # step 3: atomic, and fails rather than overwrite a file made meanwhile
        except FileExistsError:
            raise ArchiveError(f"--out {out}: created by someone else meanwhile; nothing was deleted") from None
    finally:
        partial.unlink(missing_ok=True)
    _sync_dir(out.parent)
    digest = file_sha256(out)
    _register(engine, bound, out, rows, digest, made_by)
    deleted = _delete_archived(engine, bound, last_id, removed, rows)
    return ArchiveResult(rows, subjects, first_at, last_at, out, digest, deleted)


def file_sha256(path: Path) -> str:
    """The SHA-256 an archive is recorded with (``audit_archives.sha256``), read back from the disk."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def register_existing(engine: Engine, path: Path, *, before: str | None = None, made_by: str | None = None,
                      today: date | None = None) -> tuple[str, int, str]:
    """Record an archive file this database's audit log was archived to before archives were
    recorded (``audit_archives``, API revision 0004), so that ``/api/audit``, the person page and
    ``careledger audit search`` know of it; returns (day, rows, SHA-256).  The whole file is read
    and checked first; ``before`` defaults to the day after its last row.  Raises
    :class:`ArchiveError` (nothing recorded) for a file that cannot be read to its end, holds no
    row, is recorded already, or has rows written on or after ``before``."""
    problems: list[str] = []
    rows, last_at = 0, ""
    for row in archive_rows(path, problems):
        rows += 1
        last_at = max(last_at, str(row["at"]))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ArchiveError("; ".join(problems[:3]) + more + "; not recorded")
    if rows == 0:
        raise ArchiveError(f"{path}: no audit rows in it; not recorded")
    digest = file_sha256(path)
    if any(made.sha256 == digest for made in registered(engine)):
        raise ArchiveError(f"{path}: this archive is recorded already")
    last_day = date.fromisoformat(last_at[:10])
    day = cutoff(before, today) if before is not None else (last_day + timedelta(days=1)).isoformat()
    if last_at >= day:
        raise ArchiveError(f"--before {day}: the file has rows written on {last_day.isoformat()}, not before it")
    _register(engine, day, path, rows, digest, made_by)
    return day, rows, digest


__all__ = ["BATCH", "ArchiveError", "ArchiveResult", "archive", "count_before", "cutoff", "register_existing"]
