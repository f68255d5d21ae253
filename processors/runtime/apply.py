"""The projection runtime: one ``apply`` for a batch, used by the live worker, replay and backfill.

Commit order for one batch (as quixstreams writes its checkpoint down):

1. **Decode** every record (``RecordDecoder``): typed decode, key check, unseal.  Poison goes to
   the dead-letter topic with its reason and stays in the batch as a position-only record.
2. **Open** the store's unit of work: one transaction; the store serialises concurrent writers
   of the same positions here (a PostgreSQL advisory lock, SQLite's single writer).
3. **Positions**: read the stored offsets of the batch's partitions, drop records at or below
   them (a redelivered batch is skipped whole).
4. **De-duplicate**: the first record of each event (``event_key``: its id within its day) in the
   batch that the store does not already hold goes on; the others only advance their position.
5. **Plan and load**: the projection names the state the fresh events touch; the store loads it.
6. **Fold** (pure): the projection turns events and state into changes.
7. **Write** the changes and the new positions; **commit**.  A crash before this point leaves
   nothing behind, and the batch is re-read from the stored positions.
8. **After commit**: the ``after_commit`` hooks run (the alert relay drains the outbox, metrics).
   Kafka's own group offsets are acknowledged only later, by the consumer, and are only a hint.

Failures: a transient error (server or connection) is retried with backoff for as long as it
takes, the batch whole; any other error is deterministic for some event, so the batch is
bisected down to that event, which is dead-lettered with the error, and the rest applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic

from careledger.retrying import MAX_BACKOFF_S, call_retrying, is_transient
from careledger.tracing import trace_id
from processors.domain.model import Consumed
from processors.runtime.contracts import (
    ChangesT,
    EventKey,
    PlanT,
    Positions,
    Projection,
    StateT,
    Writer,
    event_key,
)
from processors.runtime.decoding import RecordDecoder
from processors.runtime.records import BatchStats, DeadLetter, RawRecord

log = logging.getLogger("careledger.processor")

AfterCommit = Callable[[int], None]
"""Called with the number of events a committed batch applied."""


def fresh_records(records: Sequence[Consumed], stored: Positions) -> tuple[list[Consumed], Positions]:
    """Step 3: the records past the stored position of their partition, and the new positions
    (every such record advances its partition, poison included)."""
    fresh: list[Consumed] = []
    moved: Positions = {}
    for rec in records:
        if rec.offset <= stored.get(rec.partition, -1) or rec.offset <= moved.get(rec.partition, -1):
            continue
        moved[rec.partition] = rec.offset
        fresh.append(rec)
    return fresh, moved


def commit_batch(projection: Projection[PlanT, StateT, ChangesT], writer: Writer,
                 records: list[Consumed]) -> tuple[int, int]:
    """Steps 2-7 for decoded records, in one unit of work: ``(events applied, duplicates skipped)``.
    Raises whatever the store or the fold raised (nothing is written then)."""
    with writer.transaction() as uow:  # 2
        stored = uow.offsets({rec.partition for rec in records})  # 3
        fresh, moved = fresh_records(records, stored)
        if not moved:
            return 0, 0
        keyed = _first_of_each_event(fresh)  # 4
        known = uow.known(list(keyed)) if keyed else set()
        events = [rec for key, rec in keyed.items() if key not in known]
        duplicates = sum(1 for rec in fresh if rec.event is not None) - len(events)
        plan = projection.plan([rec.event for rec in events])  # type: ignore[misc]  # 5
        state = uow.load(plan)
        changes = projection.fold(state, events)  # 6
        uow.write(changes, moved)  # 7
    return projection.applied(changes), duplicates


class ProjectionRuntime(Generic[PlanT, StateT, ChangesT]):
    """Applies batches of one projection to one store, effectively once (module docstring)."""

    def __init__(self, projection: Projection[PlanT, StateT, ChangesT], writer: Writer, decoder: RecordDecoder,
                 *, max_backoff_s: float = MAX_BACKOFF_S, sleep: Callable[[float], None] = time.sleep,
                 after_commit: Sequence[AfterCommit] = ()) -> None:
        self.projection = projection
        self.writer = writer
        self.decoder = decoder
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.after_commit = list(after_commit)
        self.stats = BatchStats()
        self.stopping = False  # set by a stopping worker: transient errors are no longer waited out

    @property
    def dead_letter(self) -> DeadLetter:
        return self.decoder.dead_letter

    # ---- the batch ------------------------------------------------------------------------------
    def apply(self, raws: Sequence[RawRecord]) -> int:
        """Process one batch to completion (blocking); return the events newly applied."""
        if not raws:
            return 0
        started = time.perf_counter()
        records = self.decoder.decode(raws)  # 1
        applied = self.apply_decoded(records, {(r.partition, r.offset): r for r in raws})
        self.stats.batches += 1
        self.stats.records += len(raws)
        self.stats.seconds += time.perf_counter() - started
        return applied

    def apply_decoded(self, records: list[Consumed], raw_of: dict[tuple[int, int], RawRecord] | None = None) -> int:
        """Steps 2-8 for records decoded already (replay decodes in a feeder thread)."""
        applied = self._bisecting(records, raw_of or {})
        by_type = self.stats.by_type
        for rec in records:
            if rec.event is not None:
                by_type[rec.event["type"]] = by_type.get(rec.event["type"], 0) + 1
        self.stats.poison = self.decoder.poison
        return applied

    def _bisecting(self, records: list[Consumed], raw_of: dict[tuple[int, int], RawRecord]) -> int:
        try:
            return self._retrying(records)
        except Exception as exc:  # noqa: BLE001 - deterministic for some event: find it
            if is_transient(exc):  # only while stopping: the batch is re-read after the restart
                raise
            if len(records) == 1:
                rec = records[0]
                log.error("dead-lettering the event at %s/%s: %r", rec.partition, rec.offset, exc,
                          extra={"trace_id": trace_id(rec.trace)})
                raw = raw_of.get((rec.partition, rec.offset))
                if raw is not None:
                    self.decoder.reject(raw, f"processing failed: {type(exc).__name__}: {exc}")
                return self._retrying([Consumed(rec.partition, rec.offset, None)])
            middle = len(records) // 2
            return self._bisecting(records[:middle], raw_of) + self._bisecting(records[middle:], raw_of)

    def _retrying(self, records: list[Consumed]) -> int:
        return call_retrying(lambda: self._commit(records), f"store {self.writer.name}",
                             max_s=self.max_backoff_s, sleep=self.sleep, give_up=lambda: self.stopping,
                             on_retry=self._count_retry, logger=log)

    def _commit(self, records: list[Consumed]) -> int:
        applied, duplicates = commit_batch(self.projection, self.writer, records)  # 2-7
        self.stats.applied += applied
        self.stats.duplicates += duplicates
        for hook in self.after_commit:  # 8
            hook(applied)
        return applied

    def _count_retry(self, _error: BaseException, _wait: float) -> None:
        self.stats.retries += 1


def _first_of_each_event(records: list[Consumed]) -> dict[EventKey, Consumed]:
    """The first record of each event (by :func:`event_key`), in batch order; poison left out."""
    out: dict[EventKey, Consumed] = {}
    for rec in records:
        if rec.event is not None:
            out.setdefault(event_key(rec.event), rec)
    return out


__all__ = ["AfterCommit", "ProjectionRuntime", "commit_batch", "fresh_records"]
