"""What the projection runtime needs from a projection and from a store (declared, not probed).

A projection is a *policy* (:class:`Projection`): from a batch of events it says which state it
needs (``plan``) and, given that state, what to write (``fold``) - pure, no I/O.  A store is an
*adapter* (:class:`Writer`): it opens one transaction per batch (:class:`UnitOfWork`) in which
the runtime reads positions, asks which events it already holds, loads the planned state and
writes the changes together with the new positions.  Everything a caller uses is declared here;
nobody looks for methods with ``getattr``.

Positions are Kafka offsets: ``{partition: last applied offset}`` of the events topic, stored by
the writer in the same transaction as the read model (effectively-once).

An event is identified by its :data:`EventKey`, ``(event_id, day)``: a re-sent event carries its
``occurred_at``, so its day, with its id.  The SQL store indexes its events by the day first, so
that a batch of today's events adds its keys at the end of that index instead of at random places
of it - the pages a commit writes (docs/performance.md, "Which pages a commit writes").
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from processors.domain.calendar import event_date
from processors.domain.model import Consumed

Event = dict[str, Any]
Positions = dict[int, int]
#: ``(event_id, day)``: how the runtime and the stores tell a re-sent event from a new one
EventKey = tuple[str, str]


def event_key(event: Event) -> EventKey:
    """The identity of ``event``: its id within its day (Asia/Shanghai).  The day is interned: a
    resident replay keeps a key per event, and a few thousand distinct days need not be a
    million strings."""
    return event["event_id"], sys.intern(event_date(event["occurred_at"]))

PlanT = TypeVar("PlanT")
StateT = TypeVar("StateT")
ChangesT = TypeVar("ChangesT")
PlanT_co = TypeVar("PlanT_co", covariant=True)
PlanT_contra = TypeVar("PlanT_contra", contravariant=True)
StateT_contra = TypeVar("StateT_contra", contravariant=True)
StateT_co = TypeVar("StateT_co", covariant=True)
ChangesT_contra = TypeVar("ChangesT_contra", contravariant=True)


@runtime_checkable
class Projection(Protocol[PlanT_co, StateT_contra, ChangesT]):
    """The pure part of a projection (a fold), independent of where it is stored."""

    name: str

    def plan(self, events: list[Event]) -> PlanT_co:
        """The state ``events`` can touch (keys only; cheap)."""
        ...

    def fold(self, state: StateT_contra, records: list[Consumed]) -> ChangesT:
        """What to write for ``records`` (fresh, de-duplicated, events not None) given ``state``."""
        ...

    def applied(self, changes: ChangesT) -> int:
        """How many events ``changes`` applied (for stats)."""
        ...


@runtime_checkable
class UnitOfWork(Protocol[PlanT_contra, StateT_co, ChangesT_contra]):
    """One open transaction of a store; committed when its context exits without error."""

    def offsets(self, partitions: Iterable[int]) -> Positions:
        """Stored positions of ``partitions`` (absent: nothing applied), read inside the transaction."""
        ...

    def known(self, keys: Sequence[EventKey]) -> set[EventKey]:
        """Which of ``keys`` the store already applied (re-sent events are skipped)."""
        ...

    def load(self, plan: PlanT_contra) -> StateT_co:
        """The state the plan names, as it is committed."""
        ...

    def write(self, changes: ChangesT_contra, positions: Positions) -> None:
        """Write the changes and the new positions (both commit together)."""
        ...


@runtime_checkable
class Writer(Protocol):
    """A store's write side: transactions for the runtime, positions for seeking and lag."""

    name: str  # the projection name its positions are kept under

    def transaction(self) -> AbstractContextManager[UnitOfWork[Any, Any, Any]]:
        """A unit of work; the store serialises concurrent writers of the same positions here."""
        ...

    def offsets(self) -> Positions:
        """Every stored position (outside a transaction: seeking, lag)."""
        ...


@runtime_checkable
class PositionSource(Protocol):
    """Anything whose positions the lag probe compares with the log."""

    name: str

    def offsets(self) -> Positions: ...


@runtime_checkable
class OutboxSource(Protocol):
    """Alert changes committed by the projection and not yet published (the relay drains it)."""

    def outbox_pending(self, limit: int = 1000) -> list[dict[str, Any]]: ...

    def mark_sent(self, seqs: Iterable[int]) -> int: ...


@runtime_checkable
class Housekeeping(Protocol):
    """Time-driven work of a store that publishes (need warnings due today, overdue alerts)."""

    def sweep_warnings(self, now: datetime) -> Any:
        """Publish warnings due at ``now`` never published, clear fulfilled ones (once each)."""
        ...

    def escalate(self, now: datetime, after: timedelta) -> Any:
        """Publish again, once, critical alerts still unacknowledged ``after`` they were raised."""
        ...


@dataclass
class Binding:
    """One projection bound to one open store: what a worker or a replay runs."""

    projection: Projection[Any, Any, Any]
    writer: Writer
    close: Callable[[], None]
    ping: Callable[[], bool]
    outbox: OutboxSource | None = None  # projections that publish alert changes
    housekeeping: Housekeeping | None = None
    # an empty state that the projection's fold keeps whole when handed it batch after batch
    # (processors/runtime/resident.py); None: this projection's state is only ever loaded
    resident: Callable[[], Any] | None = None


@runtime_checkable
class StoreSource(Protocol):
    """Where a worker's store comes from: opened (and migrated) at start, and again after a replay
    swapped another store in (``projections.registry`` knows which one is active)."""

    def open(self) -> Binding: ...

    def swapped(self) -> bool:
        """True once when the active store changed since the last ``open`` (a cheap check)."""
        ...
