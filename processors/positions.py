"""Keeps what a live worker applies contiguous with what its store already holds.

The store's offsets are the truth: the worker seeks every assigned partition to the offset after
the store's, and the store drops records at or below its offsets as already applied.  So one
record applied from *beyond* the next offset the store needs would move the store past the
records in between, and they would be dropped later as "already applied": lost without a trace.
The stream can hand us such a record:

* records prefetched before a seek (a rebalance, a registry swap) still sit in Faust's buffers
  (faust-streaming/faust#221);
* a consumer position bug skips records (faust-streaming/faust#216 after a rebalance);
* after our own seek back, Faust drops the re-read records below the highest offset it already
  handed out (its ``_read_offset`` filter), so they would never come again.

Per partition the guard knows ``next``, the offset the store needs.  A record beyond it is
checked against the broker once (``probe``: the first offset at or after ``next`` that holds a
record, read by a separate client):

* the broker has nothing there - a *hole*: offsets deleted by retention before the store applied
  them, a transactional producer's control records - the record is applied, the hole logged and
  counted (the read model cannot contain what the log no longer has);
* the broker has the record: the stream is somewhere else than the store.  Records prefetched
  before a seek, a consumer position bug, or - the common case - faust's own recovery seeking
  every partition to the *consumer group's* committed offsets after our seek to the store's
  (so a store emptied by hand, or behind the group, would never be caught up).  The record is
  dropped and the partition is **sought again** to ``next`` (:meth:`PositionGuard.take_reseeks`,
  done by the worker on the event loop); leftovers that still arrive before the seek takes
  effect are dropped too.  Only when re-seeking does not bring ``next`` after many attempts does
  the guard raise :class:`PositionLost`, and the worker stops for a restart.

Pure logic: the probe is injected (``processors.worker`` gives one on kafka-python).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

log = logging.getLogger("careledger.processor")

#: ``(partition, offset)`` -> the first offset >= ``offset`` that holds a record (None: unknown)
Probe = Callable[[int, int], int | None]


class Positioned(Protocol):
    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=Positioned)


class PositionLost(RuntimeError):
    """The stream skipped records the store still needs; only a restart re-reads them safely."""

    def __init__(self, partition: int, needed: int, got: int, why: str = "") -> None:
        self.partition, self.needed, self.got = partition, needed, got
        why = why or f"the broker shows no hole at {needed}"
        super().__init__(f"partition {partition}: the store needs offset {needed} next, the stream gave {got} "
                         f"and {why}; a restart re-reads from the store's position")


@dataclass
class _Seek:
    """A seek to ``next`` is pending: records beyond it may still arrive before it takes effect."""
    highest: int
    since: float  # when it was requested (leftovers drain in well under RESEEK_AFTER_S)
    dropped: int = 0
    attempts: int = 0  # re-seeks requested since the store last advanced on this partition


class PositionGuard:
    """Filters each batch so that the store only ever receives, per partition, the next offset."""

    #: records beyond the needed offset still arriving this long after a seek mean the seek was
    #: overridden (faust's recovery seeks to the group's committed offsets after ours): seek again
    RESEEK_AFTER_S = 3.0
    #: re-seeks without progress before giving up and restarting
    MAX_RESEEKS = 20

    def __init__(self, probe: Probe, clock: Callable[[], float] = time.monotonic) -> None:
        self.probe = probe
        self.clock = clock
        self.next: dict[int, int] = {}  # partition -> offset the store needs next
        self.holes = 0  # holes let through (logged one by one), for the metrics
        self.reseeks = 0  # seeks requested because the stream was elsewhere, for the metrics
        self._seeks: dict[int, _Seek] = {}
        self._wanted: dict[int, int] = {}  # partition -> offset to seek to (taken by the worker)
        self._present: dict[tuple[int, int], int | None] = {}  # probe answers for the current place
        self._lock = threading.Lock()  # rebalance callbacks run on the loop, batches in a thread

    def sought(self, partition: int, offset: int) -> None:
        """The consumer was sought to ``offset``, the offset the store needs next."""
        with self._lock:
            self.next[partition] = offset
            self._seeks[partition] = _Seek(highest=offset - 1, since=self.clock())
            self._wanted.pop(partition, None)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: their next owner seeks from the store."""
        with self._lock:
            gone = set(partitions)
            for p in gone:
                self.next.pop(p, None)
                self._seeks.pop(p, None)
                self._wanted.pop(p, None)
            self._present = {place: answer for place, answer in self._present.items() if place[0] not in gone}

    def admit(self, records: Sequence[R]) -> list[R]:
        """The records to apply, in order; raises :class:`PositionLost` (see the module doc)."""
        with self._lock:
            return [r for r in records if self._admit(r.partition, r.offset)]

    def take_reseeks(self) -> dict[int, int]:
        """Partitions to seek (to the offset the store needs) because the stream is elsewhere."""
        with self._lock:
            wanted, self._wanted = self._wanted, {}
            return wanted

    def _admit(self, p: int, offset: int) -> bool:
        want = self.next.get(p)
        if want is None or offset == want:  # contiguous (or a partition nobody sought: the stream's word)
            self._advance(p, offset)
            return True
        if offset < want:
            return False  # already in the store (redelivered after a seek)
        present = self._first_present(p, want)
        if present is not None and present > want:  # nothing on the broker in [want, present)
            if offset > present:  # beyond the hole too: judge it from the hole's end
                self._record_hole(p, want, present)
                self._present.pop((p, want), None)
                self.next[p] = present
                return self._admit(p, offset)
            self._record_hole(p, want, offset)
            self._advance(p, offset)
            return True
        seek = self._seeks.get(p)
        if seek is None:  # the stream skipped records in normal flow
            self._reseek(p, want, offset, _Seek(highest=offset, since=self.clock()))
            return False
        if offset > seek.highest:  # a leftover from before the seek, or the seek was overridden
            seek.highest = offset
            seek.dropped += 1
            if self.clock() - seek.since > self.RESEEK_AFTER_S:
                self._reseek(p, want, offset, seek)
            return False
        # the stream went back, but not to ``want``: someone else's seek (faust's recovery seeks to
        # the group's committed offsets after ours) - seek again to where the store needs
        self._reseek(p, want, offset, seek)
        return False

    def _reseek(self, p: int, want: int, got: int, seek: _Seek) -> None:
        seek.attempts += 1
        if seek.attempts > self.MAX_RESEEKS:
            raise PositionLost(p, want, got, f"{self.MAX_RESEEKS} seeks back to it did not bring it")
        seek.highest, seek.dropped, seek.since = got, 0, self.clock()
        self._seeks[p] = seek
        self._wanted[p] = want
        self.reseeks += 1
        log.warning("partition %d: the stream gave offset %d but the store needs %d next (the consumer group's "
                    "committed offset is not the store's position, or records were skipped): reading again from "
                    "the store's position", p, got, want)

    def _first_present(self, p: int, want: int) -> int | None:
        if (p, want) not in self._present:
            self._present[(p, want)] = self.probe(p, want)
        return self._present[(p, want)]

    def _advance(self, p: int, offset: int) -> None:
        if p in self.next:
            self._present.pop((p, self.next[p]), None)
        self.next[p] = offset + 1
        self._seeks.pop(p, None)
        self._wanted.pop(p, None)

    def _record_hole(self, p: int, first: int, end: int) -> None:
        self.holes += 1
        log.error("partition %d: offsets %d..%d hold no record on the broker (deleted by retention, or a "
                  "transactional producer's markers); the read model goes on without them", p, first, end - 1)
