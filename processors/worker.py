"""The faust-streaming worker: ``careledger process --projection NAME``.

One worker process serves one projection store and one consumer group (``<group>-<projection>``),
so a slow or absent ClickHouse never holds back the SQL read models.  Several processes with the
same projection share the partitions (Kafka rebalances them); the store's positions make that safe.

What runs where:

* the faust agent (event loop) takes batches (``take_events`` with a ``within``) and hands each
  to the applier (``processors/applier.py``, the projection runtime in a process of its own) -
  *pipelined*: a sender thread admits a batch (position guard) and submits it, a receiver thread
  waits for its report, and up to ``MAX_IN_FLIGHT`` batches are submitted ahead, so while one
  batch is decoded, folded and committed the agent collects the next and the applier already has
  it when it is done: faust's per-event machinery and the projection's work overlap;
* the runtime owns the batch: decode → positions → de-duplication → load → fold → write +
  positions in one transaction → alert relay (``processors/runtime/apply.py`` lists the steps).

Positions: the store is the source of truth.  On every assignment the worker seeks each partition
to the offset after the one the store last applied.  Faust's own recovery then seeks every
partition to the consumer group's committed offsets, which are only a hint (they may be ahead
of an emptied or restored store, or behind it); the position guard (``processors/positions.py``)
sees the stream elsewhere than the store and the worker seeks again, so a store that is empty or
behind catches up from its own positions, whatever the group committed, and says so in the log.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import faust
import mode.loop
from faust.types import TP
from mode.utils.times import want_seconds

from careledger import clock
from careledger.retrying import call_retrying
from careledger.settings import Settings
from processors.applier import Applier, Housekept, start_applier
from processors.kafka_auth import faust_broker_options
from processors.lag import LagProbe
from processors.logging_setup import configure_logging
from processors.metrics import OpsServer, WorkerMetrics
from processors.positions import PositionGuard
from processors.replay.reader import first_record_from
from processors.runtime.contracts import Binding, StoreSource
from processors.runtime.heap import GcClock
from processors.runtime.records import BatchStats, RawRecord

log = logging.getLogger("careledger.processor")

LAG_LOG_INTERVAL_S = 10.0
#: batches handed to the applier and not yet reported: 2 keeps it busy (the next batch is there when
#: it finishes one) without holding more than one extra batch in memory (bench/pipeline.py)
MAX_IN_FLIGHT = 2
HOUSEKEEPING_INTERVAL_S = 10.0
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Pipeline:
    """The worker's state shared by the agent, the rebalance callbacks and the timers."""

    def __init__(self, settings: Settings, projection: str, binding: Binding, applier: Applier,
                 metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.projection = projection
        self.binding = binding  # the worker's own connection to the store: positions, lag, ping
        self.applier = applier  # the only writer (processors/applier.py)
        self.metrics = metrics
        self.stats = BatchStats()  # the applier's cumulative stats, as of its last batch
        self.guard = PositionGuard(partial(first_record_from, settings))
        self.lag = LagProbe(settings, {projection: binding.writer})
        self.lock = threading.Lock()  # timers' requests and swaps: one at a time, never during a swap
        self.sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"submit-{projection}")
        self.receiver = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"collect-{projection}")
        self.inflight: collections.deque[asyncio.Future[None]] = collections.deque()  # oldest first
        self.spent = {"collecting": 0.0, "waiting": 0.0, "submitting": 0.0}  # the agent's time, logged at stop

    def submit(self, raws: list[RawRecord]) -> tuple[int, int, float]:
        """The sender thread, one batch after the other in the agent's order: admit (position
        guard), then hand the batch to the applier; the ticket to collect it with."""
        started = time.perf_counter()
        admitted = self.guard.admit(raws)  # may ask the broker; raises PositionLost
        self.metrics.offset_holes(self.guard.holes)
        return self.applier.submit(admitted), len(raws), started

    def collect(self, submitted: tuple[int, int, float]) -> None:
        """The receiver thread, in submission order: wait for a batch's report."""
        ticket, count, started = submitted
        report = self.applier.collect(ticket)
        self.stats = report.stats
        self.metrics.batch_done(report.stats, count, time.perf_counter() - started)
        self.metrics.dead_letters(report.dead_letters)
        self.metrics.alert_changes(report.alert_changes)
        self.metrics.time_spent("applier", report.spent)
        self.metrics.time_spent("agent", self.spent)

    def idle(self) -> bool:
        """No batch submitted and not yet reported."""
        return all(f.done() for f in self.inflight)

    def drain(self) -> None:
        with self.lock:
            self.applier.drain()

    def switch(self, binding: Binding) -> Binding:
        """A replay swapped another store in: the applier moves to it, and so do the worker's reads."""
        with self.lock:
            self.applier.switch()
            old, self.binding = self.binding, binding
            self.lag.stores[self.projection] = binding.writer
            return old


def build_app(settings: Settings, projection: str, pipeline: Pipeline, source: StoreSource | None = None) -> faust.App:
    group = f"{settings.processor_group}-{projection}"
    datadir = settings.home / "faust" / group
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        group,
        **faust_broker_options(settings),  # several bootstrap servers, SASL/TLS credentials
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
        broker_commit_every=settings.batch_size,
        # memory: what faust holds ahead of the applier is bounded by one batch in its stream buffer
        # and 512 KiB per partition fetch; 4x the batch and 4 MiB per partition held ~175 MB more at
        # the same rate (bench/pipeline.py, docs/performance.md)
        stream_buffer_maxsize=settings.batch_size,
        consumer_max_fetch_size=512 * 1024,
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
    )
    topic_name = settings.topics.events
    events_topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
    ops = pipeline.metrics

    async def seek_to_store(partitions: list[int], why: str) -> None:
        stored = await asyncio.to_thread(pipeline.binding.writer.offsets)
        behind: list[str] = []
        for tp in app.consumer.assignment():
            if tp.topic != topic_name or tp.partition not in partitions:
                continue
            offset = stored[tp.partition] + 1 if tp.partition in stored else 0
            await app.consumer.seek(tp, offset)
            pipeline.guard.sought(tp.partition, offset)
            behind.append(f"{tp.partition}@{offset}")
        if behind:
            empty = "; the store is empty: building it from offset 0" if not stored else ""
            log.info("%s: reading %s from the store's own positions (partition@offset: %s)%s", why,
                     pipeline.binding.writer.name, ", ".join(sorted(behind)), empty)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        partitions = [tp.partition for tp in assigned if tp.topic == topic_name]
        await seek_to_store(partitions, f"assigned {len(partitions)} partitions")
        ops.partitions_assigned(len(partitions))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        await wait_inflight(0)
        pipeline.guard.forget(tp.partition for tp in revoked if tp.topic == topic_name)

    async def wait_inflight(most: int) -> None:
        """Until at most ``most`` batches are in flight (the oldest finish first); re-raises a
        batch's failure (crash_on_failure has stopped the app by then)."""
        while len(pipeline.inflight) > most:
            try:
                await pipeline.inflight[0]
            finally:
                pipeline.inflight.popleft()

    def crash(exc: BaseException) -> None:
        """Never let a failed batch pass: faust would ack and skip it."""
        log.error("batch not applied (%s: %s); stopping so it is read again after the restart",
                  type(exc).__name__, exc)
        pipeline.applier.set_stopping()
        ops.crashed = True
        asyncio.ensure_future(app.crash(exc))

    def crash_on_failure(future: asyncio.Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None and not ops.crashed:  # the first failure; the batches after it fail with it
            crash(exc)

    @app.agent(events_topic, name=f"{group}-apply")
    async def apply_events(stream: faust.Stream) -> None:
        loop = asyncio.get_running_loop()
        mark = time.perf_counter()
        async for batch in stream.take_events(settings.batch_size, within=want_seconds(settings.batch_within_s)):
            pipeline.spent["collecting"] += time.perf_counter() - mark
            raws = [RawRecord(m.partition, m.offset, m.key, m.value, m.headers or ())  # headers: traceparent
                    for m in (e.message for e in batch)]
            try:
                mark = time.perf_counter()
                await wait_inflight(MAX_IN_FLIGHT - 1)  # room for this one
                pipeline.spent["waiting"] += time.perf_counter() - mark
                for partition, offset in pipeline.guard.take_reseeks().items():
                    await wait_inflight(0)  # what was admitted before the reseek is applied first
                    await app.consumer.seek(TP(topic_name, partition), offset)
                if source is not None and await asyncio.to_thread(source.swapped):  # replay swapped a store in
                    await wait_inflight(0)
                    await switch_store()
                mark = time.perf_counter()
                submitted = await loop.run_in_executor(pipeline.sender, pipeline.submit, raws)
                pipeline.spent["submitting"] += time.perf_counter() - mark
            except Exception as exc:  # noqa: BLE001 - a batch failed, or could not be admitted or sent
                if not ops.crashed:
                    crash(exc)
                return
            collected = loop.run_in_executor(pipeline.receiver, pipeline.collect, submitted)
            collected.add_done_callback(crash_on_failure)
            pipeline.inflight.append(collected)
            mark = time.perf_counter()

    async def switch_store() -> None:
        assert source is not None
        new = await asyncio.to_thread(source.open)
        old = await asyncio.to_thread(pipeline.switch, new)
        partitions = [tp.partition for tp in app.consumer.assignment() if tp.topic == topic_name]
        await seek_to_store(partitions, "registry swap")
        await asyncio.to_thread(old.close)

    progress_seen: dict[int, int | None] = {}  # partition -> the guard's next offset at the last lag check

    async def unstick(report: Any) -> None:
        """A partition behind the log that made no progress since the last check is sought to the
        store's position again: the one case the position guard cannot see is a stream that hands
        out nothing at all (faust's recovery sought it to the group's committed offset, at the end
        of the log, while the store - emptied, restored - is behind)."""
        lags = report.per_partition.get(projection, {})
        assigned = [tp.partition for tp in app.consumer.assignment() if tp.topic == topic_name]
        stuck = [p for p in assigned
                 if lags.get(p, 0) > 0 and p in progress_seen and progress_seen[p] == pipeline.guard.next.get(p)
                 and pipeline.idle()]
        for p in assigned:
            progress_seen[p] = pipeline.guard.next.get(p)
        if stuck:
            await seek_to_store(stuck, f"{len(stuck)} partitions behind the log without progress")

    swept_on: list[date] = []  # the Shanghai dates whose warning sweep ran in this process
    caught_up: list[bool] = [False]  # the last lag measurement found nothing left to apply

    def housekeep(now: datetime, sweep: bool) -> Housekept | None:
        with pipeline.lock:  # between batches: the applier does one thing at a time
            return pipeline.applier.housekeeping(now, sweep, timedelta(hours=settings.escalate_after_h))

    @app.timer(interval=HOUSEKEEPING_INTERVAL_S)
    async def housekeeping() -> None:
        """Need warnings due today are published once a day: at CARELEDGER_WARNING_SWEEP_AT (at
        start if that time has passed), as soon as the worker has caught up with the log - a sweep
        over a store still rebuilding would miss what the log holds.  Overdue critical alerts
        are escalated at every tick."""
        now = clock.utc_now()
        local = now.astimezone(SHANGHAI)
        sweep = (local.strftime("%H:%M") >= settings.warning_sweep_at and local.date() not in swept_on
                 and caught_up[0])
        try:
            done = await asyncio.to_thread(housekeep, now, sweep)
            if done is None:
                return
            if sweep:
                swept_on.append(local.date())
                log.info("warning sweep %s: %d became due, %d cleared", local.date(), done.due, done.cleared)
            if done.escalated:
                log.info("escalated %d critical alerts unacknowledged for %.0f h", done.escalated,
                         settings.escalate_after_h)
        except Exception as exc:  # noqa: BLE001 - a timer error would crash the app; the next tick retries
            log.warning("housekeeping of %s not done: %s: %s", projection, type(exc).__name__, exc)

    @app.timer(interval=LAG_LOG_INTERVAL_S)
    async def report_lag() -> None:
        try:
            report = await asyncio.to_thread(pipeline.lag.measure)
        except Exception as exc:  # noqa: BLE001 - a timer error would crash the app: the store or
            # Kafka is down, which the batch path already waits out (tests/integration/test_faults_clickhouse.py)
            log.warning("lag of %s not measured: %s: %s", projection, type(exc).__name__, exc)
            return
        ops.lag(report)
        caught_up[0] = projection not in report.unavailable and report.per_projection.get(projection, 1) == 0
        await unstick(report)
        stats = pipeline.stats
        log.info("lag %s=%d (batches=%d applied=%d duplicates=%d poison=%d retries=%d reseeks=%d)", projection,
                 report.total, stats.batches, stats.applied, stats.duplicates, stats.poison, stats.retries,
                 pipeline.guard.reseeks)
        try:
            await asyncio.to_thread(pipeline.drain)
        except Exception as exc:  # noqa: BLE001 - the rows stay pending for the next drain
            log.warning("alert relay not drained: %s: %s", type(exc).__name__, exc)

    return app


def run_worker(settings: Settings, projection: str, source: StoreSource,
               metrics_port: Callable[[], int] | None = None) -> int:
    """Run until SIGTERM/SIGINT; the batch in hand finishes (its transaction is atomic anyway)."""
    configure_logging(settings, f"processor-{projection}")
    if settings.event_loop == "uvloop":  # before faust/mode create any loop (docs/performance.md)
        mode.loop.use("uvloop")
    # a store that is down at start is waited for here, as during a batch (not a crash loop)
    binding = call_retrying(source.open, f"store {projection}", logger=log)
    applier = start_applier(settings, projection, source)
    ops = WorkerMetrics(projection)
    pipeline = Pipeline(settings, projection, binding, applier, ops)
    gc_clock = GcClock(pipeline.spent).install()  # the process's garbage collector, next to the agent's time
    app = build_app(settings, projection, pipeline, source)
    server = OpsServer(ops, lambda: pipeline.binding.ping(), settings.metrics_port, settings.metrics_addr).start() \
        if settings.metrics_port else None

    def on_signal() -> None:
        # SIGTERM/SIGINT: stop taking batches; a store outage no longer retries forever (the
        # batch rolls back and is re-read by whoever owns the partition next)
        if ops.stopping:
            return
        ops.stopping = True
        pipeline.applier.set_stopping()
        log.info("stopping %s worker: finishing the current batch", projection)

    # mode's Worker turns SIGTERM/SIGINT into a graceful stop (consumer leaves the group, agents
    # are cancelled).  A batch already in its thread runs to its commit: we wait for it below
    # before closing the store, so the last transaction is always whole (positions + read model).
    worker = _Worker(app, on_signal, loglevel="WARNING", quiet=True, override_logging=False)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        pipeline.sender.shutdown(wait=True)  # a batch being handed over is handed over,
        pipeline.receiver.shutdown(wait=True)  # and every batch handed over is committed (or failed)
        with pipeline.lock:
            pass
        if server is not None:
            server.stop()
        pipeline.applier.stop()
        pipeline.binding.close()
        gc_clock.remove()
        log.info("%s worker stopped (exit %d); its agent spent %s", projection, code,
                 ", ".join(f"{seconds:.1f} s {what}" for what, seconds in pipeline.spent.items()))
    return code


class _Worker(faust.Worker):
    def __init__(self, app: faust.App, on_signal: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._careledger_on_signal = on_signal
        self.spinner = None  # no terminal escapes in the JSON log (stdout/stderr are files)

    def _schedule_shutdown(self, signal: Any) -> None:  # mode's hook for SIGTERM and SIGINT
        self._careledger_on_signal()
        super()._schedule_shutdown(signal)
