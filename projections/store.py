"""What every read-model store declares (SQL: SQLite/PostgreSQL; ClickHouse; added projections).

The worker and the replay write through :meth:`ProjectionStore.binding` (the projection runtime's
policy + writer, ``processors.runtime``); the read API, the lag probe, replay verification and
erasure use the methods declared here.  A capability a caller uses is declared in one of these
Protocols - nobody looks for methods with ``getattr``.  Answers are plain dicts shaped as
CONTRACT.md §2 says, so the API layer only serialises them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from processors.domain.rules_config import RulesConfig
from processors.runtime.contracts import Binding, Positions

COUNT_KINDS = ("payment", "service", "visit", "job", "need", "person", "posting")


@runtime_checkable
class ProjectionStore(Protocol):
    name: str  # projection name its positions are kept under (and shown in /api/status)
    url: str  # where it is (shown redacted: projections.registry.redact_url)

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent)."""

    def binding(self) -> Binding:
        """The projection policy and writer the runtime applies batches with."""

    def offsets(self) -> Positions:
        """Last applied offset per partition of ``careledger.events`` (absent: none applied)."""

    def drop_positions(self, projections: list[str]) -> None:
        """Remove the positions kept under other names (a parallel replay's worker aliases)."""

    def counts(self, kind: str, key: str | None = None, date_from: date | None = None,
               date_to: date | None = None, town: str | None = None) -> dict[str, int]: ...

    def snapshot_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every read-model row, sorted (tests compare whole stores with it)."""

    def fingerprint(self) -> dict[str, Any]:
        """A small summary two builds over the same positions must agree on (replay verification)."""

    def reset(self) -> None:
        """Drop the read model and create it empty again."""

    def drop_read_models(self) -> None:
        """Drop the read model's tables (a store replay did not create: its database stays)."""

    def ping(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class ErasableStore(Protocol):
    def forget(self, person_id: str, tombstone_id: str) -> dict[str, int]:
        """Purge a forgotten person (docs/privacy.md); rows changed per kind."""


@runtime_checkable
class PersonLevelStore(ProjectionStore, ErasableStore, Protocol):
    """The SQL read model: person state, alerts, warnings and their outbox too."""

    rules: RulesConfig  # what it judges with (the API quotes the thresholds in reasons)

    def grouped_counts(self, kind: str, group_by: list[str], key: str | None = None,
                       date_from: date | None = None, date_to: date | None = None,
                       town: str | None = None) -> list[dict[str, Any]]:
        """Counts grouped by any of ``key``, ``town``, ``month``, ``date`` in one query."""

    def alerts(self, rule: str | None = None, person_id: str | None = None, status: str | None = None,
               towns: list[str] | None = None, limit: int = 100, offset: int = 0, **options: Any) -> dict[str, Any]:
        """``{"total": int, "items": [alert dicts]}``; ``towns`` (a caseworker's) follows the
        persons' current towns; ``options``: ``sort`` (newest / queue), ``assigned_to``,
        ``escalated``, ``identity`` (name and phone)."""

    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def alerts_summary(self, towns: list[str] | None = None, status: str = "open") -> list[dict[str, Any]]:
        """Per rule and current town: how many, critical, escalated, unacknowledged, the oldest."""

    def warnings_summary(self, as_of: date, towns: list[str] | None = None) -> list[dict[str, Any]]:
        """Per rule and current town: how many are due (and snoozed) at ``as_of``, the oldest."""

    def person_record(self, person_id: str, as_of: date, identity: bool = False) -> dict[str, Any] | None:
        """Profile, timeline, open and handled alerts, due warnings of one person (None: unknown)."""

    def record_alert_action(self, alert_id: str, who: str, at: str | datetime | None, action: str,
                            assignee: str | None = None) -> dict[str, Any] | None:
        """Assign, acknowledge or resolve at once (the API; the alert.handled event repeats it)."""

    def record_snooze(self, warning_id: str, person_id: str, until: str, reason: str, by: str, at: str) -> None:
        """Put a warning aside until a date at once (the API; the warning.snoozed event repeats it)."""

    def acknowledge_alert(self, alert_id: str, who: str, at: str | datetime | None = None,
                          resolve: bool = False) -> dict[str, Any] | None: ...

    def warnings(self, as_of: date, rule: str | None = None, person_id: str | None = None,
                 towns: list[str] | None = None, limit: int = 100, offset: int = 0, *,
                 snoozed_too: bool = False, identity: bool = False) -> dict[str, Any]:
        """Due at ``as_of``, oldest first; ``snoozed_too`` keeps (and marks) snoozed ones;
        ``identity`` adds name and phone."""

    def person_town(self, person_id: str) -> str | None:
        """The person's current town (None: unknown person)."""

    def person_timeline(self, person_id: str) -> dict[str, Any]:
        """``{"person": {...} | None, "events": [...], "alerts": [...]}``"""

    def event_count(self) -> int: ...

    def outbox_pending(self, limit: int = 1000) -> list[dict[str, Any]]: ...

    def outbox_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        """Published changes after ``seq`` in order, with the person's current ``town`` (SSE)."""

    def outbox_last_seq(self) -> int: ...

    def mark_sent(self, seqs: Any) -> int: ...
