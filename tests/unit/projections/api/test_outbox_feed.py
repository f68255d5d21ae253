"""The shared outbox feed of following alert streams: one store read per tick for all of them,
no gap and no repeat across the hand-over between the store and the feed, bounded memory."""

from __future__ import annotations

import asyncio
from typing import Any

from projections.api.alert_stream import WAKE_S, StreamFilter, alert_events
from projections.api.metrics import ALERT_STREAMS_OPEN, OUTBOX_FEED_READS
from projections.api.outbox_feed import OutboxFeed
from tests.unit.projections.api.test_alert_stream import FakeOutbox, ids, row

TICK = 0.01


class FlakyOutbox(FakeOutbox):
    """Fails the first ``failures`` reads, as a store that is briefly unreachable."""

    def __init__(self, rows: list[dict[str, Any]], failures: int) -> None:
        super().__init__(rows)
        self.failures = failures

    def outbox_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        return super().outbox_after(seq, limit)


async def follow(reader: FakeOutbox, feed: OutboxFeed, cursor: int, stop: asyncio.Event) -> str:
    """One following stream until ``stop``: its text."""
    async def gone() -> bool:
        return stop.is_set()

    chunks = []
    async for chunk in alert_events(reader, cursor, shown_if=StreamFilter(), is_disconnected=gone, follow=True,
                                    feed=feed):
        chunks.append(chunk)
    return "".join(chunks)


async def appended(reader: FakeOutbox, seqs: range, every: float = TICK) -> None:
    for seq in seqs:
        reader.rows.append(row(seq))
        await asyncio.sleep(every)


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(TICK)


def test_many_streams_share_one_store_read_per_tick() -> None:
    """Before the feed each stream queried the store every poll: 50 streams, 50 reads a tick."""
    reader = FakeOutbox([row(s) for s in range(1, 11)])
    feed = OutboxFeed(reader, poll_s=TICK)
    streams = 50

    open_before, reads_before = ALERT_STREAMS_OPEN._value.get(), OUTBOX_FEED_READS._value.get()

    async def scenario() -> list[str]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(follow(reader, feed, 10, stop)) for _ in range(streams)]
        await until(lambda: feed.base is not None)
        assert ALERT_STREAMS_OPEN._value.get() == open_before + streams  # /metrics shows them
        await appended(reader, range(11, 61))
        await until(lambda: feed.tail == 60)
        await asyncio.sleep(10 * TICK)  # idle ticks too
        stop.set()
        return await asyncio.gather(*tasks)

    texts = asyncio.run(scenario())
    assert ALERT_STREAMS_OPEN._value.get() == open_before
    assert OUTBOX_FEED_READS._value.get() - reads_before == feed.reads
    assert all(ids(text) == list(range(11, 61)) for text in texts)
    # each stream read the store itself at most once (before the feed had started); the rest was the feed's
    assert len(reader.reads) - feed.reads <= streams, (len(reader.reads), feed.reads)
    assert feed.reads < 300  # one read per tick for all fifty, not fifty


def test_a_stream_from_before_the_window_reads_the_store_then_the_feed() -> None:
    reader = FakeOutbox([row(s) for s in range(1, 1201)])  # more than one read batch behind
    feed = OutboxFeed(reader, poll_s=TICK)

    async def scenario() -> str:
        stop = asyncio.Event()
        watcher = asyncio.create_task(follow(reader, feed, 1200, stop))  # a live stream starts the feed
        await until(lambda: feed.base == 1200)
        resumed = asyncio.create_task(follow(reader, feed, 0, stop))  # Last-Event-ID: 0
        await appended(reader, range(1201, 1231))
        await until(lambda: feed.tail == 1230)
        await asyncio.sleep(5 * TICK)
        stop.set()
        await watcher
        return await resumed

    assert ids(asyncio.run(scenario())) == list(range(1, 1231))


def test_rows_leave_memory_after_retain_s_and_beyond_max_rows() -> None:
    now = {"t": 0.0}
    reader = FakeOutbox([])
    feed = OutboxFeed(reader, poll_s=TICK, retain_s=5.0, max_rows=100, clock=lambda: now["t"])

    async def scenario() -> None:
        stop = asyncio.Event()
        stream = asyncio.create_task(follow(reader, feed, 0, stop))
        await until(lambda: feed.base == 0)
        reader.rows.extend(row(s) for s in range(1, 11))
        await until(lambda: feed.tail == 10)
        assert feed.rows_after(0) is not None and len(feed.rows_after(0) or []) == 10
        now["t"] = 6.0  # past retain_s: the next tick lets the rows go
        reader.rows.append(row(11))
        await until(lambda: feed.tail == 11)
        assert feed.base == 10 and feed.rows_after(9) is None  # a cursor this far back reads the store
        assert [r["seq"] for r in feed.rows_after(10) or []] == [11]
        reader.rows.extend(row(s) for s in range(12, 512))  # a burst larger than max_rows
        await until(lambda: feed.tail == 511)
        assert len(feed.rows_after(feed.base or 0) or []) <= 100 and feed.base == 411
        stop.set()
        assert ids(await stream) == list(range(1, 512))  # the stream itself saw everything

    asyncio.run(scenario())


def test_the_poller_stops_with_the_last_stream_and_survives_store_errors(caplog: Any) -> None:
    reader = FlakyOutbox([row(1)], failures=0)
    feed = OutboxFeed(reader, poll_s=TICK)

    async def scenario() -> str:
        stop = asyncio.Event()
        stream = asyncio.create_task(follow(reader, feed, 0, stop))
        await until(lambda: feed.base == 1)
        reader.failures = 3  # the feed's next reads fail: it logs, and reads again on the next tick
        await until(lambda: reader.failures == 0)
        reader.rows.append(row(2))
        await until(lambda: feed.tail == 2)
        stop.set()
        text = await stream
        await asyncio.sleep(5 * TICK)
        assert feed.base is None  # no stream, no poller: a later one starts from the store's end again
        reads = feed.reads
        await asyncio.sleep(5 * TICK)
        assert feed.reads == reads
        return text

    with caplog.at_level("INFO", logger="careledger.api"):
        assert ids(asyncio.run(scenario())) == [1, 2]
    failures = [r for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(failures) == 1  # three failed ticks, one warning
    assert any("answers again" in r.getMessage() for r in caplog.records)


class HiddenTop(FakeOutbox):
    """The newest seqs are rows no stream shows (a hand-over's floor row, a forgotten person's
    blanked rows): ``outbox_last_seq`` counts them, ``outbox_after`` leaves them out."""

    def __init__(self, rows: list[dict[str, Any]], hidden_top: int) -> None:
        super().__init__(rows)
        self.hidden_top = hidden_top

    def outbox_last_seq(self) -> int:
        return max(super().outbox_last_seq(), self.hidden_top)


def test_a_stream_below_hidden_rows_joins_the_feed_instead_of_spinning() -> None:
    """Before: the stream's cursor stayed below the feed's base (nothing shown lay above it), every
    wait returned at once and the stream read the store in a busy loop (~4,700 reads in 3 s,
    65 % of a core per reconnecting browser) until a real change came."""
    reader = HiddenTop([row(s) for s in range(1, 11)], hidden_top=1_000_010)
    feed = OutboxFeed(reader, poll_s=TICK)

    async def scenario() -> str:
        stop = asyncio.Event()
        task = asyncio.create_task(follow(reader, feed, 5, stop))  # resumes with Last-Event-ID 5
        await until(lambda: feed.base is not None)
        await asyncio.sleep(WAKE_S + 30 * TICK)  # idle, past the stream's first wait
        reader.rows.append(row(1_000_011))  # the next real change
        await until(lambda: feed.tail == 1_000_011)
        await asyncio.sleep(5 * TICK)
        stop.set()
        return await task

    text = asyncio.run(scenario())
    assert ids(text) == [6, 7, 8, 9, 10, 1_000_011]
    assert len(reader.reads) - feed.reads <= 3, (len(reader.reads), feed.reads)
