"""One reader of the outbox for every open alert stream of an API process.

Why: each open ``/api/alerts/stream`` used to query the store every 0.1 s on its own - with a few
hundred caseworkers' dashboards open that is thousands of queries a second (and thread-pool hops)
for rows that are the same for all of them, and the poll interval had to stay long.  The feed
polls once per tick for everyone (``FEED_POLL_S``), keeps what it read for a few seconds
(``RETAIN_S``) and wakes the waiting streams; each stream still applies its own filter and keeps
its own cursor (docs/alert-delivery.md).

What the feed can answer: the rows with a seq in ``(base, tail]`` - ``base`` is the store's last
seq when the feed started, raised as old rows are let go.  A stream whose cursor is below ``base``
(it resumed from an older ``Last-Event-ID``, or fell more than ``RETAIN_S`` behind) reads the
store itself, as before, until it is inside the window again: no gap, no repeat.  Rows leave
memory after ``RETAIN_S`` at the most, so an erased person's alert stays no longer in the
process than a poll that ran just before the erasure would have kept it.

The poller runs only while some stream is subscribed, on the event loop of the streams; a store
that fails to answer is retried on the next tick (streams keep waiting; nothing is skipped,
because ``tail`` moves only with rows read).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from fastapi.concurrency import run_in_threadpool

from projections.api.metrics import ALERT_STREAMS_OPEN, OUTBOX_FEED_READS

log = logging.getLogger("careledger.api")

FEED_POLL_S = 0.05  # one query per tick for all streams: cheap enough to poll twice as often as a stream did
RETAIN_S = 5.0  # rows older than this are let go; a stream further behind reads the store
MAX_ROWS = 20_000  # and never more than this many (a burst: a replay's hand-over, an escalation sweep)
READ_BATCH = 500
WARN_EVERY_S = 30.0  # a store that stays away is logged once per this, not on every tick


class Outbox(Protocol):
    """What the feed reads (``PersonLevelStore.outbox_after`` / ``outbox_last_seq``)."""

    def outbox_after(self, seq: int, limit: int = READ_BATCH) -> list[dict[str, Any]]: ...

    def outbox_last_seq(self) -> int: ...


class OutboxFeed:
    """Polls ``outbox`` for all subscribed streams of one event loop (module docstring)."""

    def __init__(self, outbox: Outbox, *, poll_s: float = FEED_POLL_S, retain_s: float = RETAIN_S,
                 max_rows: int = MAX_ROWS, clock: Callable[[], float] = time.monotonic) -> None:
        self.outbox = outbox
        self.poll_s = poll_s
        self.retain_s = retain_s
        self.max_rows = max_rows
        self.clock = clock
        self.reads = 0  # store queries made (bench/sse_fanout.py reports them)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribers = 0
        self._failing_since: float | None = None
        self._warned_at = 0.0
        self._reset()

    def _reset(self) -> None:
        self.base: int | None = None  # None: not started (nothing can be answered from memory)
        self.tail = 0
        self._seqs: list[int] = []
        self._rows: list[dict[str, Any]] = []
        self._read_at: list[float] = []
        self._changed = asyncio.Event()

    # ---- the streams' side ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribed(self) -> AsyncIterator[OutboxFeed]:
        """Keep the poller running while the caller's stream is open."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a test client, a restarted server): start afresh
            self._loop, self._task, self._subscribers = loop, None, 0
            self._reset()
        self._subscribers += 1
        ALERT_STREAMS_OPEN.inc()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="outbox-feed")
        try:
            yield self
        finally:
            self._subscribers -= 1
            ALERT_STREAMS_OPEN.dec()

    def rows_after(self, cursor: int, limit: int = READ_BATCH) -> list[dict[str, Any]] | None:
        """The rows after ``cursor`` that the feed holds (at most ``limit``), or None when it
        cannot answer for ``cursor`` (below ``base``): the stream then reads the store."""
        if self.base is None or cursor < self.base:
            return None
        start = bisect.bisect_right(self._seqs, cursor)
        return self._rows[start:start + limit]

    async def wait(self, cursor: int, timeout: float) -> None:
        """Return once the feed holds a row after ``cursor``, or after ``timeout`` seconds."""
        if self.tail > cursor:
            return
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    # ---- the poller -----------------------------------------------------------------------------
    async def _start(self) -> None:
        self.tail = await run_in_threadpool(self.outbox.outbox_last_seq)
        self.reads += 1
        OUTBOX_FEED_READS.inc()
        self.base = self.tail

    async def _run(self) -> None:
        while self._subscribers > 0:
            try:
                if self.base is None:
                    await self._start()
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store is down or busy: try again next tick
                if self._failing_since is None or self.clock() - self._warned_at >= WARN_EVERY_S:
                    log.warning("outbox feed: the store did not answer (%s: %s); retrying every %.2f s",
                                type(exc).__name__, exc, self.poll_s)
                    self._warned_at = self.clock()
                if self._failing_since is None:
                    self._failing_since = self.clock()
            else:
                if self._failing_since is not None:
                    log.info("outbox feed: the store answers again after %.1f s", self.clock() - self._failing_since)
                    self._failing_since = None
            await asyncio.sleep(self.poll_s)
        # the last stream left: forget the window (a later first stream starts from the store's end)
        self._reset()

    async def _poll(self) -> None:
        got = False
        while True:
            rows = await run_in_threadpool(self.outbox.outbox_after, self.tail, READ_BATCH)
            self.reads += 1
            OUTBOX_FEED_READS.inc()
            if rows:
                now = self.clock()
                for row in rows:
                    self._seqs.append(int(row["seq"]))
                    self._rows.append(row)
                    self._read_at.append(now)
                self.tail = self._seqs[-1]
                got = True
            if len(rows) < READ_BATCH:
                break
        self._let_go()
        if got:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def _let_go(self) -> None:
        """Drop rows older than ``retain_s`` and beyond ``max_rows``; ``base`` follows."""
        oldest = self.clock() - self.retain_s
        cut = bisect.bisect_left(self._read_at, oldest)
        cut = max(cut, len(self._rows) - self.max_rows)
        if cut > 0:
            self.base = self._seqs[cut - 1]
            del self._seqs[:cut], self._rows[:cut], self._read_at[:cut]


__all__ = ["FEED_POLL_S", "MAX_ROWS", "RETAIN_S", "Outbox", "OutboxFeed"]
