"""Operations of a processor worker: the metrics/health endpoint, JSON logs, graceful SIGTERM."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from infra.process import free_port
from processors.runtime.records import RawRecord
from producers.keystore import KeyStore
from producers.simulate.generator import SimConfig, generate
from tests.support.pipeline import open_test_store, publish, tail, wait_caught_up, worker
from tests.support.runtime import runtime_for
from tests.support.servers import TestStack


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _wait(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_metrics_health_and_json_logs(stack: TestStack) -> None:
    port = free_port()
    settings = stack.fresh_settings(metrics_port=port)
    events = list(itertools.islice(generate(SimConfig(seed=5, persons=300)), 3000))
    publish(settings, events)
    producer = KafkaProducer(**settings.kafka_client_options())
    producer.send(settings.topics.events, key=b"poison", value=b"{not json")
    producer.flush()
    producer.close()
    store = open_test_store(settings, settings.sql_url)
    w = worker(settings, "sql", settings.sql_url, "ops").start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_caught_up(settings, {"sql": store}, expected_end=len(events) + 1, timeout=300, workers=[w])
        _wait(lambda: _get(base + "/readyz")[0] == 200, 60, "/readyz")
        status, body = _get(base + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        ready = json.loads(_get(base + "/readyz")[1])
        assert ready["ready"] and ready["store"] and ready["assigned"]

        def lag_exported() -> bool:
            return 'careledger_processor_lag_total_events{projection="sql"} 0.0' in _get(base + "/metrics")[1]

        _wait(lag_exported, 40, "the lag gauge (reported every 10 s)")
        status, text = _get(base + "/metrics")
        assert status == 200
        s = _samples(text)
        by_type: dict[str, int] = {}
        for e in events:
            by_type[e["type"]] = by_type.get(e["type"], 0) + 1
        for kind, count in by_type.items():
            assert s[f'careledger_processor_events_in_total{{projection="sql",type="{kind}"}}'] == count
        assert s['careledger_processor_records_total{projection="sql"}'] == len(events) + 1
        assert s['careledger_processor_events_applied_total{projection="sql"}'] == store.event_count()
        assert s['careledger_processor_poison_total{projection="sql"}'] == 1
        assert s['careledger_processor_dlq_published_total{projection="sql"}'] == 1
        assert s['careledger_processor_batch_seconds_count{projection="sql"}'] >= 1
        assert s['careledger_processor_assigned_partitions{projection="sql"}'] == settings.event_partitions
        per_partition = [k for k in s if k.startswith("careledger_processor_lag_events{")]
        assert len(per_partition) == settings.event_partitions
        alerts = store.alerts(limit=10_000)["total"]
        fired = sum(v for k, v in s.items() if k.startswith("careledger_alert_changes_published_total{"))
        assert alerts > 0 and fired >= alerts  # every alert published at least once (changes >= alerts)
        assert _get(base + "/nope")[0] == 404
    finally:
        w.stop()
    # every line the worker wrote is one JSON object (structured logs), with the process name
    lines = [line for line in w.log_path.read_text().splitlines() if line.strip()]
    assert lines, "the worker logged nothing"
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}\n{tail(w.log_path)}") from None
        assert entry["process"] == "processor-sql" and {"ts", "level", "msg"} <= entry.keys()
    assert any("stopped (exit 0)" in json.loads(line)["msg"] for line in lines)


def _records_up_to(settings, positions: dict[int, int]) -> list[RawRecord]:  # noqa: ANN001
    """Every record of the events topic at or below ``positions`` (what the store claims)."""
    consumer = KafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    tps = [TopicPartition(settings.topics.events, p) for p in positions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list[RawRecord] = []
    remaining = {tp.partition: positions[tp.partition] for tp in tps}
    deadline = time.monotonic() + 120
    while remaining and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=1000, max_records=5000).items():
            for msg in msgs:
                if tp.partition not in remaining or msg.offset > remaining[tp.partition]:
                    continue
                records.append(RawRecord(msg.partition, msg.offset, msg.key, msg.value))
                if msg.offset == remaining[tp.partition]:
                    del remaining[tp.partition]
                    consumer.pause(tp)
    consumer.close()
    assert not remaining, f"could not read back to {remaining}"
    return records


def test_sigterm_mid_stream_finishes_the_batch_and_exits_0(stack: TestStack) -> None:
    settings = dataclasses.replace(stack.fresh_settings(), batch_size=2000)
    total = 60_000
    events = list(itertools.islice(generate(SimConfig(seed=11, tail_months=6)), total))
    store = open_test_store(settings, settings.sql_url)
    producer = threading.Thread(target=publish, args=(settings, events))
    producer.start()
    w = worker(settings, "sql", settings.sql_url, "term").start()
    try:
        _wait(lambda: sum(o + 1 for o in store.offsets().values()) >= 8000, 300, "progress")
        assert w.alive()
        started = time.monotonic()
        os.killpg(w.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        code = w.proc.wait(timeout=60)  # type: ignore[union-attr]
        took = time.monotonic() - started
    finally:
        w.kill()
        producer.join()
    assert code == 0, f"worker exited {code}"
    assert took < 30, f"graceful stop took {took:.1f}s"
    positions = store.offsets()
    applied_up_to = sum(o + 1 for o in positions.values())
    assert applied_up_to < total, "the worker finished everything before SIGTERM: nothing was mid-stream"

    # the store's last batch is whole: its read models equal a fresh store fed exactly the records
    # at or below the stored offsets (no half batch, no event beyond an offset, none missing)
    reference = open_test_store(settings, f"sqlite:///{settings.home / 'reference.sqlite3'}")
    records = _records_up_to(settings, positions)
    assert len(records) == applied_up_to
    # decoded, unsealed and applied exactly as the worker does it, in one batch
    runtime_for(reference, KeyStore.from_settings(settings)).apply(records)
    assert reference.offsets() == positions
    assert store.snapshot_rows() == reference.snapshot_rows()
    logged = [json.loads(line)["msg"] for line in w.log_path.read_text().splitlines() if line.startswith("{")]
    assert any("finishing the current batch" in m for m in logged)
