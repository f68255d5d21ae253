"""The worker's applier process (processors/applier.py) against a real broker and store: it applies
batches exactly as the in-thread applier does, dead-letters poison to the real DLQ topic, keeps
house, and a dead applier is an error the worker sees (it crashes and restarts), never a silent skip."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from careledger.settings import Settings
from infra.clickhouse_server import ClickHouseServer
from processors.applier import ApplyFailed, ProcessApplier, ThreadApplier
from processors.domain.rules_config import load_rules
from processors.runtime.records import RawRecord
from projections.binding import ActiveStoreSource
from tests.support.pipeline import open_test_store
from tests.support.reliability import topic_records
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration

TOWN = "锦屏街道"


def ev(eid: str, type_: str, person: str, when: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "version": 1, "occurred_at": f"{when}T10:00:00+08:00",
            "person_id": person, "town": TOWN, "village": None, "source": "test", "payload": payload}


def raws() -> list[RawRecord]:
    reg = {"category": "physical", "grade": 1, "birth_date": "1970-01-01", "hardship": True,
           "certificate_expires": "2030-01-01"}
    events = [ev(f"reg-{i}", "person.registered", f"p{i}", "2024-01-10", reg) for i in range(20)]
    events += [ev(f"pay-{i}-{m}", "payment.disbursed", f"p{i}", f"2024-0{m}-05",
                  {"program": "living_subsidy", "amount_fen": 50_000, "period": f"2024-0{m}"})
               for i in range(20) for m in (2, 3)]
    events.append(ev("pay-dup", "payment.disbursed", "p1", "2024-03-06",
                     {"program": "living_subsidy", "amount_fen": 50_000, "period": "2024-03"}))
    out = [RawRecord(0, offset, e["person_id"].encode(), json.dumps(e, ensure_ascii=False).encode())
           for offset, e in enumerate(events)]
    out.insert(7, RawRecord(0, 10_000, None, b"{not json"))  # poison (an offset of its own, after the rest)
    return sorted(out, key=lambda r: r.offset)


def source_for(settings: Settings) -> ActiveStoreSource:
    return ActiveStoreSource(settings, "sql", load_rules(settings.rules_path))


def test_the_applier_process_equals_the_thread_applier(kafka_settings: Settings, tmp_path: Any) -> None:
    results = {}
    for mode, applier_class in (("process", ProcessApplier), ("thread", ThreadApplier)):
        settings = dataclasses.replace(kafka_settings, sql_url=f"sqlite:///{tmp_path / f'{mode}.sqlite3'}")
        applier = applier_class(settings, "sql", source_for(settings))
        try:
            batch = raws()
            first = applier.apply(batch[:30])
            report = applier.apply(batch[30:])
            again = applier.apply(batch[:-1])  # redelivered (the live worker's position guard drops these)
            assert again.stats.applied == report.stats.applied == len(batch) - 1
            assert first.dead_letters == 0 and report.dead_letters == 1
            assert report.spent["working"] > 0  # the first batch's time, for the worker's metrics
            assert ("duplicate_payment", "open") in first.alert_changes + report.alert_changes
            assert applier.drain() == 0
        finally:
            applier.stop()
        store = open_test_store(settings, settings.sql_url)
        results[mode] = store.snapshot_rows()
        store.close()
    assert results["process"] == results["thread"]
    dead = [json.loads(r.value) for r in topic_records(kafka_settings, kafka_settings.topics.dlq)]
    assert len(dead) == 2 and all(d["origin"]["offset"] == 10_000 for d in dead)  # once per applier


def test_a_dead_applier_process_is_an_error_not_a_skip(kafka_settings: Settings) -> None:
    applier = ProcessApplier(kafka_settings, "sql", source_for(kafka_settings))
    try:
        applier.apply(raws()[:5])
        assert applier.process.pid is not None
        os.kill(applier.process.pid, signal.SIGKILL)
        applier.process.wait(10)
        with pytest.raises(ApplyFailed, match="died|gone"):
            applier.apply(raws()[5:10])
    finally:
        applier.stop()
    store = open_test_store(kafka_settings, kafka_settings.sql_url)
    assert store.offsets() == {0: 4}  # the second batch was never applied, and the worker knows it
    store.close()


def test_an_answer_nobody_collects_does_not_hold_up_later_requests(kafka_settings: Settings) -> None:
    """A worker cancelled while handing a batch over leaves that batch's answer uncollected; the
    timers' requests after it (drain, housekeeping) and the stop must still be answered."""
    applier = ProcessApplier(kafka_settings, "sql", source_for(kafka_settings))
    drained: list[int] = []
    try:
        applier.submit(raws()[:5])  # never collected
        later = threading.Thread(target=lambda: drained.append(applier.drain()))
        later.start()
        later.join(30)
        assert drained == [0], "a request after an uncollected answer was never answered"
    finally:
        applier.stop()
    assert applier.process.returncode == 0  # it stopped when asked, not killed after the timeout


@pytest.mark.parametrize("applier_class", [ProcessApplier, ThreadApplier])
def test_a_stopping_worker_stops_its_applier_waiting_out_a_store_outage(
        stack: TestStack, tmp_path: Path, applier_class: type[ProcessApplier | ThreadApplier]) -> None:
    """While the store is down the applier waits the outage out inside the batch; once the worker
    is stopping (SIGTERM: ``set_stopping``) the batch gives up at its next failure, so a worker can
    be stopped during an outage, and the batch is not applied (it is read again later).  A batch
    submitted behind it is not applied either, even once the store is back: applying it would move
    the positions past the failed batch, whose events would then never be applied."""
    settings = stack.fresh_settings()
    server = ClickHouseServer(dataclasses.replace(settings, home=tmp_path / "clickhouse-home"))
    server.start()
    try:
        _stop_during_an_outage(dataclasses.replace(settings, clickhouse_url=server.url("stopping")), server,
                               applier_class)
    finally:
        server.stop()  # also when the test fails: a server left running slows every later test


def _stop_during_an_outage(settings: Settings, server: ClickHouseServer,
                           applier_class: type[ProcessApplier | ThreadApplier]) -> None:
    applier = applier_class(settings, "clickhouse",
                            ActiveStoreSource(settings, "clickhouse", load_rules(settings.rules_path)))
    outcome: list[BaseException | None] = []

    def collect(ticket: int) -> None:
        try:
            applier.collect(ticket)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            outcome.append(exc)

    try:
        assert applier.apply(raws()[:5]).stats.applied == 5
        server.stop()
        second, third = applier.submit(raws()[5:10]), applier.submit(raws()[10:15])
        waiting = threading.Thread(target=collect, args=(second,))
        waiting.start()
        waiting.join(6)
        assert waiting.is_alive(), f"the batch did not wait the outage out: {outcome}"
        applier.set_stopping()
        waiting.join(60)
        assert not waiting.is_alive(), "the applier kept waiting after the worker said it is stopping"
        assert outcome[0] is not None, "the batch was applied while the store was down"  # the store's error
        server.start()
        with pytest.raises(ApplyFailed, match="earlier batch failed"):
            applier.collect(third)
    finally:
        server.start()  # first: a batch still waiting would hold the applier (and stop()) forever
        applier.stop()
    store = open_test_store(settings, settings.clickhouse_url)
    try:
        assert store.offsets() == {0: 4}  # neither the failed batch nor the one behind it was applied
    finally:
        store.close()
