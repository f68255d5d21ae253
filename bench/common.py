"""Shared helpers for benchmarks (import from any ``bench/*.py``; keep this file small).

    from bench.common import temp_stack, publish_simulated, raw_consume_rate, run_workers

- ``temp_stack(postgres=True)``: context manager; a private KRaft broker (and PostgreSQL if asked)
  under a temporary ``CARELEDGER_HOME`` on free ports, topics created; yields ``BenchStack``;
  stops everything and deletes the home on exit (``CARELEDGER_KEEP_BENCH_HOME=1`` keeps it).
- ``publish_simulated(settings, n, persons=..., seed=...)``: publish ``n`` simulator events
  straight to ``careledger.events`` (keyed like the producer, no validation; not what you time).
- ``raw_consume_rate(settings, total)``: events/s of a bare aiokafka consumer that json-decodes
  every message: the ceiling for any Python consumer on this machine.
- ``run_workers(settings, store_url, count, group)``: start ``count`` supervised
  ``careledger process --projection sql`` workers in one consumer group, wait until the store has
  every event (lag 0), stop them; returns ``WorkerRun`` (seconds to first progress and to caught up).
- ``machine()``: a one-line description (cores, CPU model) to print with every result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from careledger.settings import Settings, Topics  # noqa: E402
from infra.kafka_broker import KafkaBroker, ensure_topics  # noqa: E402
from infra.postgres_server import PostgresServer  # noqa: E402
from infra.process import free_port  # noqa: E402


@dataclasses.dataclass
class BenchStack:
    settings: Settings
    broker: KafkaBroker
    postgres: PostgresServer | None

    def pg_url(self) -> str:
        """A new, empty PostgreSQL database on the private server."""
        assert self.postgres is not None, "temp_stack(postgres=True) needed"
        return self.postgres.create_database("b" + uuid.uuid4().hex[:12])

    def fresh_topics(self, partitions: int | None = None) -> Settings:
        """Settings with a new topic namespace (created) and consumer group prefix."""
        ns = "b" + uuid.uuid4().hex[:8]
        s = dataclasses.replace(self.settings, topics=Topics.with_namespace(ns), processor_group=f"{ns}-bench",
                                event_partitions=partitions or self.settings.event_partitions)
        ensure_topics(s)
        return s


@contextlib.contextmanager
def temp_stack(*, postgres: bool = True, partitions: int = 12) -> Iterator[BenchStack]:
    home = Path(tempfile.mkdtemp(prefix="careledger-bench-"))
    os.chmod(home, 0o755)
    port = free_port()
    settings = dataclasses.replace(
        Settings.from_env(), home=home, kafka_port=port, kafka_controller_port=free_port(),
        kafka_bootstrap=f"127.0.0.1:{port}", api_port=free_port(), kafka_security={},
        event_partitions=partitions, sql_url=f"sqlite:///{home / 'bench.sqlite3'}", clickhouse_url=None,
        processor_group="bench", metrics_port=0,
    )
    stack = BenchStack(settings, KafkaBroker(settings), PostgresServer(settings) if postgres else None)
    try:
        stack.broker.start()
        if stack.postgres is not None:
            stack.postgres.start()
        ensure_topics(settings)
        yield stack
    finally:
        if stack.postgres is not None:
            stack.postgres.stop()
        stack.broker.stop()
        if not os.environ.get("CARELEDGER_KEEP_BENCH_HOME"):
            shutil.rmtree(home, ignore_errors=True)


def publish_simulated(settings: Settings, n: int, *, persons: int = 20_000, seed: int = 3,
                      tail_months: int = 12) -> int:
    from kafka import KafkaProducer

    from producers.publisher import PRODUCER_DEFAULTS
    from producers.simulate.generator import SimConfig, generate
    from schemas.validation import partition_key

    producer = KafkaProducer(**settings.kafka_client_options(), **PRODUCER_DEFAULTS)
    count = 0
    for event in itertools.islice(generate(SimConfig(persons=persons, seed=seed, tail_months=tail_months)), n):
        producer.send(settings.topics.events, key=partition_key(event).encode(),
                      value=json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
        count += 1
    producer.flush()
    producer.close()
    return count


def raw_consume_rate(settings: Settings, total: int) -> float:
    async def consume() -> float:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(settings.topics.events, bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        started = time.perf_counter()
        seen = 0
        try:
            while seen < total:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10000)
                for records in batches.values():
                    for record in records:
                        json.loads(record.value)
                    seen += len(records)
        finally:
            await consumer.stop()
        return time.perf_counter() - started

    return total / asyncio.run(consume())


@dataclasses.dataclass
class WorkerRun:
    workers: int
    events: int
    first_progress_s: float  # start → the store's first commit (process start, group join)
    caught_up_s: float       # start → lag 0

    @property
    def rate(self) -> float:
        """End to end: events / (start → caught up)."""
        return self.events / self.caught_up_s

    @property
    def steady_rate(self) -> float:
        """Events / (first commit → caught up): without process start-up and group join."""
        return self.events / max(self.caught_up_s - self.first_progress_s, 1e-9)


def run_workers(settings: Settings, store_url: str, count: int, group: str, events: int,
                timeout: float = 7200) -> WorkerRun:
    from tests.support.pipeline import WorkerProcess, open_test_store, wait_caught_up

    store = open_test_store(settings, store_url)
    workers = [WorkerProcess(settings, "sql", store_url, f"{settings.processor_group}-{group}",
                             settings.home / "logs" / f"{group}-{i}.log") for i in range(count)]
    first: list[float] = []
    done = threading.Event()
    started = time.perf_counter()

    def watch_first_commit() -> None:
        while not done.is_set():
            if store.offsets():
                first.append(time.perf_counter() - started)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_first_commit, daemon=True)
    for w in workers:
        w.start()
    watcher.start()
    try:
        wait_caught_up(settings, {"sql": store}, expected_end=events, timeout=timeout, workers=workers)
        total = time.perf_counter() - started
    finally:
        done.set()
        for w in workers:
            w.stop()
        store.close()
    return WorkerRun(count, events, first[0] if first else 0.0, total)


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model or platform.processor() or 'unknown CPU'}), Python {platform.python_version()}"
