"""The faust-streaming worker: ``careledger process --projection sql|clickhouse``.

One worker process serves one projection store and one consumer group (``<group>-<projection>``),
so a slow or absent ClickHouse never holds back the SQL read models.  Several processes with the
same projection share the partitions (Kafka rebalances them); the store's per-partition offsets
make that safe.

Positions: the store is the source of truth.  On every assignment the worker seeks each partition
to the offset after the one the store last applied, so Faust's own commits (which happen after
the ack, i.e. after our transaction) are only a hint and a wiped store rebuilds from the start.
A position guard (processors/positions.py) lets through, per partition, only the offset the store
needs next: a record the stream hands out of turn is dropped or stops the worker, never applied.

Checkpoint order per batch (as in quixstreams): apply to the store and commit its transaction
(read model + offsets together) → publish pending alerts from the outbox, mark them sent →
Faust acks, and commits the Kafka group offset on its interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from functools import partial
from typing import Any

import faust
from mode.utils.times import want_seconds

from careledger.settings import Settings
from processors.alert_relay import AlertRelay
from processors.kafka_auth import faust_broker_options
from processors.lag import LagProbe
from processors.metrics import CountingAlertPublisher, OpsServer, WorkerMetrics
from processors.positions import PositionGuard
from processors.replay.follow import RegistryFollower
from processors.replay.reader import first_record_from
from processors.runner import BatchRunner, RawRecord, call_retrying
from producers.publisher import EventPublisher
from projections.registry import Registry, RegistryError
from projections.store import ProjectionStore

log = logging.getLogger("careledger.processor")

LAG_LOG_INTERVAL_S = 10.0


def store_url_for(settings: Settings, projection: str) -> str:
    if Registry(settings).active_name(projection) is not None:  # replay swapped it (docs/replay.md)
        return Registry(settings).active_url(projection)
    if projection == "sql":
        return settings.sql_url
    if projection == "clickhouse":
        if not settings.clickhouse_url:
            raise SystemExit("CARELEDGER_CLICKHOUSE_URL is not set: no ClickHouse projection to run")
        return settings.clickhouse_url
    try:  # a projection added later (projections/registry.py)
        return Registry(settings).active_url(projection)
    except RegistryError as exc:
        raise SystemExit(str(exc)) from None


def build_app(settings: Settings, projection: str, store: ProjectionStore,
              publisher: EventPublisher, metrics: WorkerMetrics | None = None,
              follower: RegistryFollower | None = None) -> faust.App:
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
        stream_buffer_maxsize=max(4 * settings.batch_size, 8192),
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
    )
    events_topic = app.topic(settings.topics.events, value_serializer="raw", key_serializer="raw")
    ops = metrics if metrics is not None else WorkerMetrics(projection)
    batch_lock = threading.Lock()  # held while a batch is applied: shutdown waits for it

    def dead_letter(key: bytes | None, value: bytes, reasons: list[str], partition: int, offset: int) -> None:
        publisher.publish_dlq(value.decode("utf-8", "replace"), reasons,
                              {"source": settings.topics.events, "partition": partition, "offset": offset,
                               "projection": projection})
        ops.dead_lettered()

    runner = BatchRunner(store, dead_letter)
    positions = PositionGuard(partial(first_record_from, settings))
    relay = AlertRelay(store, CountingAlertPublisher(publisher)) if projection == "sql" else None
    lag = LagProbe(settings, {projection: store})

    @app.on_partitions_assigned.connect
    async def seek_to_store_positions(sender: Any, assigned: set[Any], **_: Any) -> None:
        stored = await asyncio.to_thread(runner.store.offsets)  # the store may have been swapped
        for tp in assigned:
            if tp.topic != settings.topics.events:
                continue
            offset = stored[tp.partition] + 1 if tp.partition in stored else 0
            await app.consumer.seek(tp, offset)
            positions.sought(tp.partition, offset)
        log.info("assigned %d partitions of %s; positions from store %s", len(assigned),
                 settings.topics.events, runner.store.name)
        ops.partitions_assigned(sum(1 for tp in assigned if tp.topic == settings.topics.events))

    @app.on_partitions_revoked.connect
    async def forget_revoked_positions(sender: Any, revoked: set[Any], **_: Any) -> None:
        positions.forget(tp.partition for tp in revoked if tp.topic == settings.topics.events)

    def process_batch(raws: list[RawRecord]) -> None:
        with batch_lock:
            started = time.perf_counter()
            raws = positions.admit(raws)  # may ask the broker; raises PositionLost
            ops.offset_holes(positions.holes)
            runner.run(raws)
            ops.batch_done(runner.stats, len(raws), time.perf_counter() - started)
            publisher.flush()  # dead letters of this batch are on Kafka before we ack it
            if relay is not None:
                relay.drain()

    @app.agent(events_topic, name=f"{group}-apply")
    async def apply_events(stream: faust.Stream) -> None:
        async for batch in stream.take_events(settings.batch_size, within=want_seconds(settings.batch_within_s)):
            raws = [RawRecord(e.message.partition, e.message.offset, e.message.key, e.message.value)
                    for e in batch]
            if follower is not None:  # replay: swap to the registry's active store at this boundary
                await follower.at_batch_boundary(app, runner, relay, lag, positions)
            try:
                await asyncio.to_thread(process_batch, raws)
            except Exception as exc:  # never let it escape: Faust would ack and skip the events
                log.exception("batch from %s not applied; stopping so it is re-read after restart",
                              [(r.partition, r.offset) for r in raws[:1]])
                runner.stopping = True
                ops.crashed = True
                await app.crash(exc)
                return

    @app.timer(interval=LAG_LOG_INTERVAL_S)
    async def report_lag() -> None:
        try:
            report = await asyncio.to_thread(lag.measure)
        except Exception as exc:  # noqa: BLE001 - a timer error would crash the app: the store or
            # Kafka is down, which the batch path already waits out (tests/integration/test_faults_clickhouse.py)
            log.warning("lag of %s not measured: %s: %s", projection, type(exc).__name__, exc)
            return
        ops.lag(report)
        log.info("lag %s=%d (batches=%d applied=%d poison=%d retries=%d)", projection, report.total,
                 runner.stats.batches, runner.stats.applied, runner.stats.poison, runner.stats.retries)
        if relay is not None:
            try:
                await asyncio.to_thread(relay.drain)
            except Exception as exc:  # noqa: BLE001 - the rows stay pending for the next drain
                log.warning("alert relay not drained: %s: %s", type(exc).__name__, exc)

    app.careledger_runner = runner  # type: ignore[attr-defined]
    app.careledger_positions = positions  # type: ignore[attr-defined]
    app.careledger_batch_lock = batch_lock  # type: ignore[attr-defined]
    return app


def run_worker(settings: Settings, projection: str) -> int:
    """Run until SIGTERM/SIGINT; the current batch finishes (its transaction is atomic anyway)."""
    from processors.domain.rules_config import load_rules
    from processors.logging_setup import configure_logging

    configure_logging(settings, f"processor-{projection}")
    rules = load_rules(settings.rules_path)
    follower = RegistryFollower(settings, projection, rules, store_url_for(settings, projection))
    # a store that is down at start is waited for here, as during a batch (not a crash loop)
    store = call_retrying(follower.open, f"store {projection}")
    publisher = EventPublisher(settings)
    ops = WorkerMetrics(projection)
    app = build_app(settings, projection, store, publisher, ops, follower)
    server = OpsServer(ops, store.ping, settings.metrics_port, settings.metrics_addr).start() \
        if settings.metrics_port else None

    def on_signal() -> None:
        # SIGTERM/SIGINT: stop taking batches; a store outage no longer retries forever (the
        # batch rolls back and is re-read by whoever owns the partition next)
        if ops.stopping:
            return
        ops.stopping = True
        app.careledger_runner.stopping = True  # type: ignore[attr-defined]
        log.info("stopping %s worker: finishing the current batch", projection)

    # mode's Worker turns SIGTERM/SIGINT into a graceful stop (consumer leaves the group, agents
    # are cancelled).  A batch already in its thread runs to its commit: we wait for it below
    # before closing the store, so the last transaction is always whole (offsets + facts).
    worker = _Worker(app, on_signal, loglevel="WARNING", quiet=True, override_logging=False)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        with app.careledger_batch_lock:  # type: ignore[attr-defined]
            pass
        if server is not None:
            server.stop()
        publisher.close()
        store.close()
        app.careledger_runner.store.close()  # type: ignore[attr-defined]  # after a replay swap
        log.info("%s worker stopped (exit %d)", projection, code)
    return code


class _Worker(faust.Worker):
    def __init__(self, app: faust.App, on_signal: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._careledger_on_signal = on_signal
        self.spinner = None  # no terminal escapes in the JSON log (stdout/stderr are files)

    def _schedule_shutdown(self, signal: Any) -> None:  # mode's hook for SIGTERM and SIGINT
        self._careledger_on_signal()
        super()._schedule_shutdown(signal)
