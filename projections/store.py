"""The one interface every read-model store implements (SQL: SQLite/PostgreSQL; ClickHouse).

The worker writes through ``apply_batch``; the read API and replay read through the query methods.
Answers are plain dicts shaped as CONTRACT.md §2 says, so the API layer only serialises them.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from processors.domain.model import Consumed


def fresh_records(records: list[Consumed], positions: dict[int, int], seen: set[str],
                  moved: dict[int, int] | None = None) -> list[Consumed]:
    """The effectively-once filter every store's write path starts with: records past the stored
    position of their partition, and of those, the first of each ``event_id`` not in ``seen``.
    Every record past its position advances ``positions`` (and ``moved``), poison included, so
    the stored offsets cover what was skipped too.  ``positions`` and ``seen`` are updated."""
    out: list[Consumed] = []
    for rec in records:
        if rec.offset <= positions.get(rec.partition, -1):
            continue
        positions[rec.partition] = rec.offset
        if moved is not None:
            moved[rec.partition] = rec.offset
        event = rec.event
        if event is None or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        out.append(rec)
    return out


class CountsAnswer(dict[str, int]):
    """``{"events": int, "persons": int, "amount_fen": int, "positions": int}``"""


class ProjectionStore(Protocol):
    name: str  # projection name used in the offsets table and in /api/status

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent)."""

    def apply_batch(self, records: list[Consumed]) -> int:
        """Apply one batch effectively-once; return how many events were newly applied."""

    def offsets(self) -> dict[int, int]:
        """Last applied offset per partition of ``careledger.events`` (absent: none applied)."""

    def counts(
        self,
        kind: str,
        key: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        town: str | None = None,
    ) -> dict[str, int]: ...

    def close(self) -> None: ...


class PersonLevelStore(ProjectionStore, Protocol):
    """Stores that also keep person state, alerts and warnings (the SQL stores)."""

    def alerts(
        self,
        rule: str | None = None,
        person_id: str | None = None,
        status: str | None = None,
        towns: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        """``{"total": int, "items": [alert dicts]}``; ``towns`` restricts for caseworkers."""

    def warnings(
        self,
        as_of: date,
        rule: str | None = None,
        person_id: str | None = None,
        towns: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]: ...

    def grouped_counts(
        self,
        kind: str,
        group_by: list[str],
        key: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        town: str | None = None,
    ) -> list[dict[str, Any]]:
        """Counts grouped by any of ``key``, ``town``, ``month``, ``date`` in one query."""

    def person_timeline(self, person_id: str) -> dict[str, Any]:
        """``{"person": {...} | None, "events": [...], "alerts": [...]}``"""
