"""Resident state: a build that alone writes a store it found empty keeps the state in memory.

Why: a replay worker building a shard or a new shadow reads back, batch after batch, the state it
wrote itself - the load and de-duplication queries and turning rows back into aggregates were a
fifth of its time at 500,000 events (docs/performance.md, "replay with resident state"). When the store was empty at
the start and nothing else writes it, what this runtime wrote *is* the store's state, so the unit
of work answers ``known`` from the event ids it has written and ``load`` with the state that the
projection's fold keeps up to date in place (``Binding.resident``). Every write still goes to the
store with its positions, in the same transaction: the store stays the truth, and a build gives
the same store with or without resident state.

Two things drop the resident state, after which the store answers again (the build goes on,
slower): more than ``max_events`` events applied (memory is bounded: ~0.5 KB per event for the
main read model), and any error inside a unit of work (a fold or write that failed half-way may
have changed the state in place; the runtime then retries or bisects against the store).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from processors.runtime.contracts import EventKey, Positions, UnitOfWork, Writer

log = logging.getLogger("careledger.replay")


class ResidentWriter:
    """A :class:`~processors.runtime.contracts.Writer` over ``inner`` that keeps the state resident."""

    def __init__(self, inner: Writer, state: Any, max_events: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.state: Any = state  # None once dropped
        self.max_events = max_events
        self.events = 0
        self._seen: set[EventKey] = set()

    @property
    def resident(self) -> bool:
        return self.state is not None

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork[Any, Any, Any]]:
        if self.state is None:
            with self.inner.transaction() as uow:
                yield uow
            return
        try:
            with self.inner.transaction() as uow:
                yield _ResidentUnitOfWork(self, uow)
        except BaseException as exc:
            self.drop(f"{type(exc).__name__} in a batch")
            raise
        if self.events > self.max_events:
            self.drop(f"more than {self.max_events:,} events")

    def offsets(self) -> Positions:
        return self.inner.offsets()

    def drop(self, why: str) -> None:
        if self.state is not None:
            log.info("%s: resident state dropped (%s) after %d events; the store answers from now on",
                     self.name, why, self.events)
        self.state = None
        self._seen = set()


class _ResidentUnitOfWork:
    """The inner unit of work, with ``known`` and ``load`` answered from memory."""

    def __init__(self, writer: ResidentWriter, inner: UnitOfWork[Any, Any, Any]) -> None:
        self.writer = writer
        self.inner = inner
        self._fresh: list[EventKey] = []

    def offsets(self, partitions: Iterable[int]) -> Positions:
        return self.inner.offsets(partitions)

    def known(self, keys: Sequence[EventKey]) -> set[EventKey]:
        seen = self.writer._seen
        known = {key for key in keys if key in seen}
        self._fresh = [key for key in keys if key not in known]
        return known

    def load(self, plan: Any) -> Any:
        return self.writer.state

    def write(self, changes: Any, positions: Positions) -> None:
        self.inner.write(changes, positions)
        self.writer._seen.update(self._fresh)
        self.writer.events += len(self._fresh)
        self._fresh = []


__all__ = ["ResidentWriter"]
