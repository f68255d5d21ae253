"""Killing the leader of the busiest partitions of a three-node Kafka cluster, during ingest and
during processing: the scenario behind tests/integration/test_faults_cluster.py (CI size) and
bench/cluster_faults.py (full size).

1. a three-node KRaft cluster (``infra/kafka_cluster.py``: replication factor 3,
   ``min.insync.replicas=2``, no unclean leader election) under ``home``;
2. **ingest**: ``careledger ingest -`` as a subprocess fed at a steady pace with 60 % of the events
   (some bad lines among the good ones); at evenly spaced points of its progress the node leading
   most of the busiest partitions (largest end offsets) is SIGKILLed; once the cluster has moved it
   out of every in-sync replica set it stays dead ``down_s`` more seconds while the ingest goes on
   writing to the two others, then it is restarted and the next kill waits until every replica is
   back in sync;
3. **processing**: a supervised SQL worker consumes that backlog while the other 40 % are
   published at a steady pace; at evenly spaced points of its applied offsets the busiest leader is
   killed and restarted the same way;
4. the events topic is read back (every valid event exactly once) and the read models are compared
   row for row with a clean run over the same log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from careledger.settings import Settings, Topics
from infra.kafka_broker import ensure_topics
from infra.kafka_cluster import KafkaCluster
from tests.support.pipeline import REPO_ROOT, open_test_store, publish, tail, wait_caught_up, worker
from tests.support.reliability import (
    clean_run,
    dead_letters,
    diff_snapshots,
    offsets_sum,
    sample_events,
    topic_records,
)

BAD_LINES = [b"{not json", b"\xff\xfe not utf-8", b'{"event_id": "x", "type": "nope"}']


@dataclasses.dataclass
class Kill:
    phase: str
    node: int
    progress: int  # records on the topic (ingest) or applied by the worker (processing) at the kill
    still_flowing: bool  # lines of the ingest were still to be written / events still being published
    noticed_s: float  # until the cluster had moved the dead node out of every in-sync replica set
    min_isr_while_down: int  # smallest in-sync replica set seen while the node was dead
    restart_s: float
    resync_s: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ClusterFaultRun:
    cluster_start_s: float = 0.0
    valid_lines: int = 0
    ingested_lines: int = 0
    published_during_processing: int = 0
    ingest_exit: int | None = None
    messages_on_topic: int = 0
    distinct_on_topic: int = 0
    lost: int = 0
    rejected_lines: int = 0
    kills: list[Kill] = dataclasses.field(default_factory=list)
    worker_restarts: int = 0
    catch_up_s: float = 0.0
    differences: dict[str, int] = dataclasses.field(default_factory=dict)
    rows: int = 0
    missing_events: list[str] = dataclasses.field(default_factory=list)
    snapshot: dict[str, list[Any]] = dataclasses.field(default_factory=dict, repr=False)  # the faulted store

    @property
    def duplicates_on_topic(self) -> int:
        return self.messages_on_topic - self.distinct_on_topic


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _sizes(settings: Settings) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_client_options(), group_id=None, request_timeout_ms=15_000)
    try:
        parts = [TopicPartition(settings.topics.events, p)
                 for p in consumer.partitions_for_topic(settings.topics.events) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def _isr(cluster: KafkaCluster, topic: str) -> list[list[int]] | None:
    try:
        return [p["isr"] for p in cluster.partitions(topic).values()]
    except Exception:  # noqa: BLE001 - metadata requests may fail while a node dies: look again
        return None


def _kill_busiest(cluster: KafkaCluster, settings: Settings, phase: str, progress: int, flowing: bool,
                  down_s: float, log: Callable[[str], None]) -> Kill:
    """SIGKILL the node leading most of the busiest partitions; once the cluster has noticed (the
    node left every in-sync replica set), keep it dead ``down_s`` seconds, then restart it and wait
    until every replica is in sync again."""
    topic = settings.topics.events
    node = cluster.busiest_leader(topic, _sizes(settings))
    cluster.kill(node)
    killed = time.monotonic()
    log(f"{phase}: killed node {node} (leader of the busiest partitions) at {progress}")
    isr = _isr(cluster, topic)
    while isr is None or any(node in members for members in isr):
        if time.monotonic() - killed > 60:
            raise AssertionError(f"node {node} still in an in-sync replica set 60 s after its SIGKILL: {isr}")
        time.sleep(0.3)
        isr = _isr(cluster, topic)
    noticed = time.monotonic() - killed
    min_isr = min(len(members) for members in isr)
    deadline = time.monotonic() + down_s
    while time.monotonic() < deadline:
        now = _isr(cluster, topic)
        if now:
            min_isr = min(min_isr, *(len(members) for members in now))
        time.sleep(0.5)
    restart_s = cluster.start_node(node)
    resync_s = cluster.wait_in_sync(topic)
    log(f"{phase}: cluster noticed in {noticed:.1f}s; node {node} back in {restart_s:.1f}s, replicas in sync "
        f"{resync_s:.1f}s later")
    return Kill(phase, node, progress, flowing, round(noticed, 1), min_isr, round(restart_s, 1), round(resync_s, 1))


def run_cluster_faults(home: Path, *, persons: int, seed: int = 31, ingest_kills: int = 2,
                       processing_kills: int = 2, down_s: float = 4.0, ingest_s: float = 36.0, flow_s: float = 40.0,
                       batch_size: int = 500, partitions: int = 6,
                       log: Callable[[str], None] = lambda _: None) -> ClusterFaultRun:
    """The scenario of the module docstring; returns what it counted (the caller asserts/prints).
    60 % of the events are ingested with ``careledger ingest`` over ``ingest_s`` seconds; the rest
    are published over ``flow_s`` seconds while the worker processes.  The ingest publishes in steps
    of ``producers.ingest.CHUNK_LINES`` lines: give it several steps for the kills to land mid-ingest."""
    home.mkdir(parents=True, exist_ok=True)
    base = dataclasses.replace(
        Settings.from_env(), home=home, event_partitions=partitions, topics=Topics.with_namespace("clf"),
        processor_group="clf-processor", sql_url=f"sqlite:///{home / 'projections.sqlite3'}", clickhouse_url=None,
        kafka_security={}, keystore_url="", batch_size=batch_size, local_servers=frozenset())
    cluster = KafkaCluster(base)
    run = ClusterFaultRun()
    try:
        run.cluster_start_s = round(cluster.start(), 1)
        settings = cluster.client_settings()
        ensure_topics(settings)
        log(f"cluster of {len(cluster.nodes)} nodes up in {run.cluster_start_s}s: {settings.kafka_bootstrap}")
        events = sample_events(persons=persons, seed=seed)
        run.valid_lines = len({e["event_id"] for e in events})
        split = len(events) * 3 // 5
        _ingest_with_kills(cluster, settings, events[:split], run, ingest_kills, down_s, ingest_s, home, log)
        _process_with_kills(cluster, settings, events[split:], run, processing_kills, down_s, flow_s, log)
        on_topic = topic_records(settings, settings.topics.events)
        ids = [json.loads(r.value)["event_id"] for r in on_topic]
        run.messages_on_topic, run.distinct_on_topic = len(ids), len(set(ids))
        run.lost = run.valid_lines - len(set(ids) & {e["event_id"] for e in events})
        run.rejected_lines = len(dead_letters(settings))
        log(f"topic: {run.distinct_on_topic} of {run.valid_lines} events, {run.duplicates_on_topic} duplicates, "
            f"{run.lost} lost, {run.rejected_lines} rejected lines dead-lettered")
        _compare_with_clean_run(settings, run, log)
    finally:
        cluster.stop()
    return run


def _ingest_with_kills(cluster: KafkaCluster, settings: Settings, events: list[dict[str, Any]],
                       run: ClusterFaultRun, kills: int, down_s: float, ingest_s: float, home: Path,
                       log: Callable[[str], None]) -> None:
    lines = [json.dumps(e, ensure_ascii=False).encode() for e in events]
    for i, bad in enumerate(BAD_LINES):
        lines.insert((i + 1) * len(lines) // (len(BAD_LINES) + 1), bad)
    run.ingested_lines = len(events)
    with open(home / "ingest.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "careledger.cli", "ingest", "-"], cwd=REPO_ROOT,
                                env={**os.environ, **settings.to_env()}, stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    chunk = max(1, int(len(lines) / (ingest_s * 10)))
    kills_done = threading.Event()

    def feed() -> None:
        """Paced over ``ingest_s``; the last chunk waits until every kill is done, so each kill lands
        while lines are still being written, however long a kill and its recovery take."""
        starts = list(range(0, len(lines), chunk))
        for start in starts:
            if start == starts[-1]:
                kills_done.wait(900)
            proc.stdin.write(b"\n".join(lines[start:start + chunk]) + b"\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            time.sleep(0.1)
        proc.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        for k in range(kills):
            threshold = (k + 1) * len(events) // (kills + 2)
            _wait(lambda t=threshold: sum(_sizes(settings).values()) >= t, 300, f"ingest progress to {threshold}")
            written = sum(_sizes(settings).values())  # some lines are still to come: a kill mid-ingest
            run.kills.append(_kill_busiest(cluster, settings, "ingest", written, written < len(events), down_s, log))
        kills_done.set()
        writer.join()
        run.ingest_exit = proc.wait(timeout=300)
    finally:
        kills_done.set()
        if proc.poll() is None:
            proc.kill()
    log(f"ingest exited with {run.ingest_exit}")


def _process_with_kills(cluster: KafkaCluster, settings: Settings, flow: list[dict[str, Any]], run: ClusterFaultRun,
                        kills: int, down_s: float, flow_s: float, log: Callable[[str], None]) -> None:
    backlog = sum(_sizes(settings).values())
    url = f"sqlite:///{settings.home / 'faulted.sqlite3'}"
    store = open_test_store(settings, url)
    victim = worker(settings, "sql", url, "faulted").start()
    failures: list[str] = []
    chunk = max(1, int(len(flow) / (flow_s * 4)))
    kills_done = threading.Event()

    def publish_flow() -> None:  # events keep arriving while the worker processes
        """Paced over ``flow_s``; the last chunk waits until every kill is done, so each kill lands
        while events are still being published, however fast the worker and the cluster are."""
        try:
            starts = list(range(0, len(flow), chunk))
            for start in starts:
                if start == starts[-1]:
                    kills_done.wait(900)
                publish(settings, flow[start:start + chunk])  # acks=all, idempotent; raises on any failure
                run.published_during_processing += len(flow[start:start + chunk])
                time.sleep(0.25)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            failures.append(f"{type(exc).__name__}: {exc}")

    publisher = threading.Thread(target=publish_flow)
    try:
        _wait(lambda: offsets_sum(store) > 0, 300, "the worker's first batch")
        publisher.start()
        for k in range(kills):
            point = backlog + (k + 1) * len(flow) // (kills + 2)
            _wait(lambda p=point: offsets_sum(store) >= p, 600, f"worker progress to {point}")
            run.kills.append(_kill_busiest(cluster, settings, "processing", offsets_sum(store), publisher.is_alive(),
                                           down_s, log))
        kills_done.set()
        publisher.join()
        assert not failures, f"publishing during processing failed: {failures}"
        run.catch_up_s = round(wait_caught_up(settings, {"faulted": store}, expected_end=backlog + len(flow),
                                              timeout=600, workers=[victim]), 1)
    finally:
        kills_done.set()
        victim.stop()
        if publisher.is_alive():
            publisher.join()
    run.worker_restarts = tail(victim.log_path, 2000).count("[supervise]")
    run.snapshot = store.snapshot_rows()
    log(f"processing: caught up {run.catch_up_s}s after the last publish; worker restarts {run.worker_restarts}")


def _compare_with_clean_run(settings: Settings, run: ClusterFaultRun, log: Callable[[str], None]) -> None:
    got = run.snapshot
    want = clean_run(settings, f"sqlite:///{settings.home / 'clean.sqlite3'}").snapshot_rows()
    run.differences = diff_snapshots(got, want)
    run.rows = sum(len(v) for v in want.values())
    missing = {r[0] for r in want.get("events", [])} - {r[0] for r in got.get("events", [])}
    run.missing_events = sorted(missing)[:10]
    log(f"read models: {sum(run.differences.values())} rows differ from a clean run of {run.rows} rows")
