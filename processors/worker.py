"""The faust-streaming worker: ``careledger process --projection sql|clickhouse``.

One worker process serves one projection store and one consumer group (``<group>-<projection>``),
so a slow or absent ClickHouse never holds back the SQL read models.  Several processes with the
same projection share the partitions (Kafka rebalances them); the store's per-partition offsets
make that safe.

Positions: the store is the source of truth.  On every assignment the worker seeks each partition
to the offset after the one the store last applied, so Faust's own commits (which happen after
the ack, i.e. after our transaction) are only a hint and a wiped store rebuilds from the start.

Checkpoint order per batch (as in quixstreams): apply to the store and commit its transaction
(read model + offsets together) → publish pending alerts from the outbox, mark them sent →
Faust acks, and commits the Kafka group offset on its interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from mode.utils.times import want_seconds

from careledger.settings import Settings
from processors.alert_relay import AlertRelay
from processors.lag import LagProbe
from processors.runner import BatchRunner, RawRecord
from producers.publisher import EventPublisher
from projections import open_store
from projections.store import ProjectionStore

log = logging.getLogger("careledger.processor")

LAG_LOG_INTERVAL_S = 10.0


def store_url_for(settings: Settings, projection: str) -> str:
    if projection == "sql":
        return settings.sql_url
    if projection == "clickhouse":
        if not settings.clickhouse_url:
            raise SystemExit("CARELEDGER_CLICKHOUSE_URL is not set: no ClickHouse projection to run")
        return settings.clickhouse_url
    raise SystemExit(f"unknown projection {projection!r} (sql or clickhouse)")


def build_app(settings: Settings, projection: str, store: ProjectionStore,
              publisher: EventPublisher) -> faust.App:
    group = f"{settings.processor_group}-{projection}"
    datadir = settings.home / "faust" / group
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        group,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
        broker_commit_every=settings.batch_size,
        stream_buffer_maxsize=max(4 * settings.batch_size, 8192),
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_acks=-1,
    )
    events_topic = app.topic(settings.topics.events, value_serializer="raw", key_serializer="raw")

    def dead_letter(key: bytes | None, value: bytes, reasons: list[str], partition: int, offset: int) -> None:
        publisher.publish_dlq(value.decode("utf-8", "replace"), reasons,
                              {"source": settings.topics.events, "partition": partition, "offset": offset,
                               "projection": projection})

    runner = BatchRunner(store, dead_letter)
    relay = AlertRelay(store, publisher) if projection == "sql" else None
    lag = LagProbe(settings, {projection: store})

    @app.on_partitions_assigned.connect
    async def seek_to_store_positions(sender: Any, assigned: set[Any], **_: Any) -> None:
        positions = await asyncio.to_thread(store.offsets)
        for tp in assigned:
            if tp.topic != settings.topics.events:
                continue
            stored = positions.get(tp.partition)
            await app.consumer.seek(tp, stored + 1 if stored is not None else 0)
        log.info("assigned %d partitions of %s; positions from store %s", len(assigned),
                 settings.topics.events, store.name)

    def process_batch(raws: list[RawRecord]) -> None:
        runner.run(raws)
        publisher.flush()  # dead letters of this batch are on Kafka before we ack it
        if relay is not None:
            relay.drain()

    @app.agent(events_topic, name=f"{group}-apply")
    async def apply_events(stream: faust.Stream) -> None:
        async for batch in stream.take_events(settings.batch_size, within=want_seconds(settings.batch_within_s)):
            raws = [RawRecord(e.message.partition, e.message.offset, e.message.key, e.message.value)
                    for e in batch]
            try:
                await asyncio.to_thread(process_batch, raws)
            except Exception as exc:  # never let it escape: Faust would ack and skip the events
                log.exception("batch from %s not applied; stopping so it is re-read after restart",
                              [(r.partition, r.offset) for r in raws[:1]])
                runner.stopping = True
                await app.crash(exc)
                return

    @app.timer(interval=LAG_LOG_INTERVAL_S)
    async def report_lag() -> None:
        report = await asyncio.to_thread(lag.measure)
        log.info("lag %s=%d (batches=%d applied=%d poison=%d retries=%d)", projection, report.total,
                 runner.stats.batches, runner.stats.applied, runner.stats.poison, runner.stats.retries)
        if relay is not None:
            await asyncio.to_thread(relay.drain)

    app.careledger_runner = runner  # type: ignore[attr-defined]
    return app


def run_worker(settings: Settings, projection: str) -> int:
    """Run until SIGTERM/SIGINT; the current batch finishes (its transaction is atomic anyway)."""
    from processors.domain.rules_config import load_rules
    from processors.logging_setup import configure_logging

    configure_logging(settings, f"processor-{projection}")
    rules = load_rules(settings.rules_path)
    store = open_store(store_url_for(settings, projection), rules, topic=settings.topics.events)
    store.migrate()
    publisher = EventPublisher(settings)
    app = build_app(settings, projection, store, publisher)
    # mode's Worker turns SIGTERM/SIGINT into a graceful stop; the batch in its thread finishes
    # (its transaction commits or rolls back as a whole) before the interpreter exits.
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        publisher.close()
        store.close()
    return 0
