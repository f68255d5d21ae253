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
* the broker has the record: while a seek is pending, records beyond ``next`` that arrive in
  rising order are prefetched leftovers and are dropped (they come again after the seek); any
  other one (or more leftovers than the buffers can hold) means the stream lost records, and
  :class:`PositionLost` is raised.  The worker then stops and its supervisor restarts it: a fresh
  consumer seeks from the store, the one recovery that needs no trust in the stream's buffers.

Pure logic: the probe is injected (``processors.worker`` gives one on kafka-python).
"""

from __future__ import annotations

import logging
import threading
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
    """A seek back to ``next`` is pending: leftovers beyond it arrive first, in rising order."""
    highest: int
    dropped: int = 0


class PositionGuard:
    """Filters each batch so that the store only ever receives, per partition, the next offset."""

    #: more leftovers than Faust and aiokafka can hold before a seek: the needed offset is not coming
    #: (deleted after the broker was asked, say), so stop and let a restart start from the store
    MAX_LEFTOVERS = 200_000

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.next: dict[int, int] = {}  # partition -> offset the store needs next
        self.holes = 0  # holes let through (logged one by one), for the metrics
        self._seeks: dict[int, _Seek] = {}
        self._present: dict[tuple[int, int], int | None] = {}  # probe answers for the current place
        self._lock = threading.Lock()  # rebalance callbacks run on the loop, batches in a thread

    def sought(self, partition: int, offset: int) -> None:
        """The consumer was sought to ``offset``, the offset the store needs next."""
        with self._lock:
            self.next[partition] = offset
            self._seeks[partition] = _Seek(highest=offset - 1)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: their next owner seeks from the store."""
        with self._lock:
            gone = set(partitions)
            for p in gone:
                self.next.pop(p, None)
                self._seeks.pop(p, None)
            self._present = {place: answer for place, answer in self._present.items() if place[0] not in gone}

    def admit(self, records: Sequence[R]) -> list[R]:
        """The records to apply, in order; raises :class:`PositionLost` (see the module doc)."""
        with self._lock:
            return [r for r in records if self._admit(r.partition, r.offset)]

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
        if seek is not None and offset > seek.highest:
            seek.highest = offset  # fetched before the seek; it comes again after it
            seek.dropped += 1
            if seek.dropped > self.MAX_LEFTOVERS:
                raise PositionLost(p, want, offset, f"{seek.dropped} records came since the seek, none of them {want}")
            return False
        raise PositionLost(p, want, offset)

    def _first_present(self, p: int, want: int) -> int | None:
        if (p, want) not in self._present:
            self._present[(p, want)] = self.probe(p, want)
        return self._present[(p, want)]

    def _advance(self, p: int, offset: int) -> None:
        if p in self.next:
            self._present.pop((p, self.next[p]), None)
        self.next[p] = offset + 1
        self._seeks.pop(p, None)

    def _record_hole(self, p: int, first: int, end: int) -> None:
        self.holes += 1
        log.error("partition %d: offsets %d..%d hold no record on the broker (deleted by retention, or a "
                  "transactional producer's markers); the read model goes on without them", p, first, end - 1)
