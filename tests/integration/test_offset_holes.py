"""Offsets that hold no record (processors/positions.py) against a real broker and a real worker.

Two kinds of holes a live worker meets: the start of a partition deleted before the store applied
it (retention, ``kafka-delete-records``), and the control records a transactional producer leaves
between its events.  The worker must apply every record that is there, in order, log the holes,
and not stall or stop; its read models then equal a clean run over what the topic holds.
"""

from __future__ import annotations

import itertools
import time
import urllib.request
from types import SimpleNamespace

from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from infra.process import free_port
from processors.lag import LagProbe
from producers.publisher import PRODUCER_DEFAULTS, encode
from producers.simulate.generator import SimConfig, generate
from schemas.validation import partition_key
from tests.support.pipeline import open_test_store, publish, tail, worker
from tests.support.reliability import clean_run, diff_snapshots, topic_records
from tests.support.servers import TestStack

TRANSACTIONS = 8


def _send_in_transactions(settings, events: list[dict]) -> None:  # noqa: ANN001
    producer = KafkaProducer(**settings.kafka_client_options(), **{
        **PRODUCER_DEFAULTS, "transactional_id": f"{settings.processor_group}-tx", "client_id": "tx-test"})
    try:
        producer.init_transactions()
        size = -(-len(events) // TRANSACTIONS)
        for start in range(0, len(events), size):
            producer.begin_transaction()
            for event in events[start:start + size]:
                producer.send(settings.topics.events, key=partition_key(event).encode(), value=encode(event))
            producer.commit_transaction()  # leaves a control record on every partition it wrote to
    finally:
        producer.close()


def _last_record_offsets(settings) -> dict[int, int]:  # noqa: ANN001
    """Partition -> offset of its last record (control records are not records)."""
    last: dict[int, int] = {}
    for record in topic_records(settings, settings.topics.events):
        last[record.partition] = max(record.offset, last.get(record.partition, -1))
    return last


def _wait_until_applied(store, w, wanted: dict[int, int]) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 300
    while store.offsets() != wanted:
        assert w.alive(), f"worker died; log:\n{tail(w.log_path)}"
        assert time.monotonic() < deadline, f"stalled at {store.offsets()}, want {wanted}"
        time.sleep(0.5)


def test_worker_applies_everything_around_deleted_and_control_offsets(stack: TestStack) -> None:
    metrics_port = free_port()
    settings = stack.fresh_settings(metrics_port=metrics_port)
    events = list(itertools.islice(generate(SimConfig(seed=31, persons=200)), 2400))
    first, middle, last = events[:800], events[800:1600], events[1600:]
    publish(settings, first)
    admin = KafkaAdminClient(**settings.kafka_client_options())
    try:  # the first 50 records of partition 0 are gone before any worker read them
        admin.delete_records({TopicPartition(settings.topics.events, 0): 50})
    finally:
        admin.close()
    _send_in_transactions(settings, middle)
    publish(settings, last)

    assert len(topic_records(settings, settings.topics.events)) == len(events) - 50
    last_offsets = _last_record_offsets(settings)
    url = settings.sql_url
    store = open_test_store(settings, url)
    behind = SimpleNamespace(offsets=lambda: {0: 9})  # a store that applied offsets 0..9 before the deletion
    probe = LagProbe(settings, {"sql": store, "behind": behind})  # type: ignore[dict-item]
    try:  # the 50 deleted offsets will never be applied: they are not lag
        before = probe.measure()
        assert before.per_partition["sql"][0] == before.end_offsets[0] - 50
        assert before.per_partition["behind"][0] == before.end_offsets[0] - 50
    finally:
        probe.close()
    w = worker(settings, "sql", url, "holes").start()
    try:
        _wait_until_applied(store, w, last_offsets)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:  # noqa: S310
            metrics = response.read().decode()
    finally:
        w.stop()
    holes = next(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith('careledger_processor_offset_holes_total{projection="sql"}'))
    assert holes >= 1 + TRANSACTIONS
    log = tail(w.log_path, 2000)
    assert "partition 0: offsets 0..49 hold no record" in log
    assert log.count("hold no record") >= TRANSACTIONS  # one control record per transaction, at least
    assert "PositionLost" not in log and "[supervise]" not in log

    reference = clean_run(settings, f"sqlite:///{settings.home / 'clean.sqlite3'}")
    differences = diff_snapshots(store.snapshot_rows(), reference.snapshot_rows())
    assert differences == {table: 0 for table in differences}, differences


def test_lag_is_zero_when_partitions_end_on_control_records(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(itertools.islice(generate(SimConfig(seed=32, persons=60)), 300))
    _send_in_transactions(settings, events)  # every partition written to ends on a commit marker
    last_offsets = _last_record_offsets(settings)
    url = settings.sql_url
    store = open_test_store(settings, url)
    probe = LagProbe(settings, {"sql": store})
    try:
        before = probe.measure()
        assert before.total >= len(events)  # records not applied are lag, markers or not
        assert all(before.end_offsets[p] > last + 1 for p, last in last_offsets.items())  # markers at the end
        w = worker(settings, "sql", url, "markers").start()
        try:
            _wait_until_applied(store, w, last_offsets)
        finally:
            w.stop()
        caught_up = probe.measure()
        assert caught_up.total == 0, caught_up.per_partition
        publish(settings, list(itertools.islice(generate(SimConfig(seed=33, persons=5)), 5)))
        assert probe.measure().total >= 5  # real records after the markers are lag again (counted in offsets)
    finally:
        probe.close()
