"""Every audit row that names one person, from the database and from the archive files.

The answer to a subject-access request - "who has read or received my data" - once
``careledger audit archive`` has moved old rows out of the database (``projections/audit_archive.py``
writes the files this reads).  A row names a person when its ``person_id`` is theirs (a read of
their record, an action on one of their alerts, a webhook POST about them) or when its
``subjects`` list them (a list or a stream that showed them among others).

Archive files may overlap with each other and with the database (an archive stopped while deleting
leaves rows in both; the next run archives them again): each row is reported once, by its ``id``
and the time it was written (an id alone could be a reused one, e.g. after a restore), and the
database's copy wins (a webhook POST's answer may have been recorded after the row was
archived).  A file or a line that cannot be read is reported with its name and line number and the
search goes on: the answer then says it is incomplete rather than silently leaving rows out.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from projections.audit_tables import audit_archives, audit_log, audit_subjects

#: where a row came from, when it is the database's
DATABASE = "database"
#: the fields every archived row must have (``audit_archive._write_archive`` writes ``audit_log``'s columns)
REQUIRED = {"id": int, "at": str, "method": str, "path": str, "status": int}


@dataclass(frozen=True)
class AuditHit:
    """One audit row naming the person: ``named`` when the row's own person is theirs, else the
    number of persons the row's list or stream showed (``listed``), and where it was found."""

    row: dict[str, Any]
    named: bool
    listed: int
    source: str

    @property
    def id(self) -> int:
        return int(self.row["id"])

    def record(self) -> dict[str, Any]:
        """The row with how it named the person (``named`` or ``listed``), how many persons it
        listed and where it was found: one line of ``--format csv`` or ``jsonl``."""
        return {**self.row, "how": "named" if self.named else "listed", "listed": self.listed, "source": self.source}

    @property
    def key(self) -> tuple[int, str]:
        """What makes two copies the same row: its id and the time it was written."""
        return self.id, str(self.row["at"])


@dataclass
class SearchResult:
    hits: list[AuditHit] = field(default_factory=list)  # oldest first
    problems: list[str] = field(default_factory=list)  # file (and line): why it could not be read
    found_in: dict[str, int] = field(default_factory=dict)  # source -> rows found there (before de-duplication)

    @property
    def complete(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RegisteredArchive:
    """An archive ``careledger audit archive`` recorded (``audit_tables.audit_archives``)."""

    before: str  # the rows written before this day (UTC) went to the file
    file: Path
    rows: int
    sha256: str


def registered(engine: Engine) -> list[RegisteredArchive]:
    """The archives made of this database's audit log, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit_archives.c.before, audit_archives.c.file, audit_archives.c.rows,
                                   audit_archives.c.sha256).order_by(audit_archives.c.id)).all()
    return [RegisteredArchive(before, Path(file), int(count), sha256) for before, file, count, sha256 in rows]


def archived_before(engine: Engine) -> str | None:
    """The latest day before which audit rows were archived (None: none ever were): rows written
    before it may be in archive files only."""
    with engine.connect() as conn:
        found = conn.execute(select(func.max(audit_archives.c.before))).scalar()
    return None if found is None else str(found)


def in_database(engine: Engine, person_id: str) -> list[AuditHit]:
    """The database's rows naming ``person_id``, each with how many persons it listed."""
    listed_in = select(audit_subjects.c.audit_id).where(audit_subjects.c.person_id == person_id)
    listed = (select(func.count()).select_from(audit_subjects)
              .where(audit_subjects.c.audit_id == audit_log.c.id).scalar_subquery())
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log, listed.label("listed"))
                            .where(or_(audit_log.c.person_id == person_id, audit_log.c.id.in_(listed_in)))
                            .order_by(audit_log.c.id)).all()
    hits = []
    for r in rows:
        row = dict(r._mapping)
        count = int(row.pop("listed") or 0)
        hits.append(AuditHit(row, row["person_id"] == person_id, count, DATABASE))
    return hits


def _problem_of(row: Any) -> str | None:
    """Why a decoded archive line is not an audit row (None: it is one)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for name, kind in REQUIRED.items():
        if not isinstance(row.get(name), kind) or isinstance(row.get(name), bool):
            return f"field {name!r} missing or not {kind.__name__}"
    subjects = row.get("subjects", [])
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        return "field 'subjects' is not a list of person ids"
    return None


def archive_rows(path: Path, problems: list[str]) -> Iterator[dict[str, Any]]:
    """Every audit row of one archive file (with its ``subjects``); what cannot be read goes to
    ``problems``, named by file and line."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    row = json.loads(line)
                except ValueError:
                    problems.append(f"{path} line {number}: not JSON")
                    continue
                problem = _problem_of(row)
                if problem is not None:
                    problems.append(f"{path} line {number}: {problem}")
                    continue
                yield row
    except FileNotFoundError:
        problems.append(f"{path}: no such file")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:  # not gzip, cut short, not UTF-8
        problems.append(f"{path}: cannot be read to its end ({type(exc).__name__}: {exc})")


def in_archive(path: Path, person_id: str, problems: list[str]) -> Iterator[AuditHit]:
    """The rows of one archive file naming ``person_id``; what cannot be read goes to ``problems``."""
    for row in archive_rows(path, problems):
        subjects = row.pop("subjects", [])
        named = row.get("person_id") == person_id
        if named or person_id in subjects:
            yield AuditHit(row, named, len(subjects), path.name)


def search(engine: Engine, person_id: str, archives: Iterable[Path] = ()) -> SearchResult:
    """Every row naming ``person_id`` in the database and in ``archives``, once each, oldest first."""
    result = SearchResult()
    by_key: dict[tuple[int, str], AuditHit] = {}
    database = in_database(engine, person_id)
    result.found_in[DATABASE] = len(database)
    for hit in database:
        by_key[hit.key] = hit
    for path in archives:
        found = 0
        for hit in in_archive(path, person_id, result.problems):
            found += 1
            by_key.setdefault(hit.key, hit)  # the database's copy (or the first file's) wins
        result.found_in[str(path)] = found
    result.hits = sorted(by_key.values(), key=lambda hit: (hit.row["at"], hit.id))
    return result


__all__ = ["DATABASE", "AuditHit", "RegisteredArchive", "SearchResult", "archive_rows", "archived_before",
           "in_archive", "in_database", "registered", "search"]
