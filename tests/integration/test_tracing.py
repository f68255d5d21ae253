"""W3C trace context end to end, on the real broker with a real worker and a real deliverer:
an event ingested with ``careledger ingest`` raises an alert, and the webhook POST that delivers the
alert carries a ``traceparent`` of the same trace as the Kafka header of the ingested event - through
the outbox row and the ``careledger.alerts`` message in between (careledger/tracing.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from careledger.settings import Settings
from projections.webhook_store import WebhookStore
from projections.webhooks.receiver import Receiver
from tests.support.delivery import run_deliverer
from tests.support.pipeline import REPO_ROOT, open_test_store, tail, wait_caught_up, worker

pytestmark = pytest.mark.integration

TRACEPARENT = r"00-[0-9a-f]{32}-[0-9a-f]{16}-01"


def ev(eid: str, type_: str, payload: dict[str, Any], day: str) -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "occurred_at": f"{day}T10:00:00+08:00", "person_id": "p-traced",
            "town": "锦屏街道", "village": None, "source": "test", "payload": payload}


def headers_by_event(settings: Settings, topic: str, key_field: str, want: int) -> dict[str, dict[str, bytes]]:
    """``{<key_field of the message>: its headers}`` for the first ``want`` messages of ``topic``."""
    consumer = KafkaConsumer(topic, **settings.kafka_client_options(), group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=20_000)
    found: dict[str, dict[str, bytes]] = {}
    try:
        for record in consumer:
            found[json.loads(record.value)[key_field]] = dict(record.headers or [])
            if len(found) >= want:
                break
    finally:
        consumer.close()
    return found


def trace_of(traceparent: str | bytes | None) -> str:
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    assert text is not None
    assert re.fullmatch(TRACEPARENT, text), text
    return text.split("-")[1]


def test_the_webhook_of_an_alert_continues_the_trace_of_the_ingested_event(kafka_settings: Settings,
                                                                           tmp_path: Path) -> None:
    settings = kafka_settings
    store = open_test_store(settings, settings.sql_url)
    hooks = WebhookStore.from_settings(settings)
    w = worker(settings, "sql", settings.sql_url, "tracing")
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in [
        ev("t-reg", "person.registered", {"category": "physical", "grade": 2, "birth_date": "1970-01-01",
                                          "hardship": True, "certificate_expires": "2030-01-01"}, "2024-03-01"),
        ev("t-visit", "visit.completed", {"visit_kind": "home_visit", "visitor": "w1",
                                          "hazards": ["unsafe_housing"]}, "2024-04-01"),
    ]), encoding="utf-8")
    with Receiver() as receiver, run_deliverer(settings) as deliverer:
        sub = hooks.create(receiver.url, rules=["visit_hazard"])
        receiver.state.secrets.append(sub["secret"])
        w.start()
        try:
            ingest = subprocess.run([sys.executable, "-m", "careledger.cli", "ingest", str(events)], cwd=REPO_ROOT,
                                    env={**os.environ, **settings.to_env()}, capture_output=True, text=True,
                                    timeout=300)
            assert ingest.returncode == 0, ingest.stdout + ingest.stderr
            wait_caught_up(settings, {"sql": store}, workers=[w], timeout=180)
            if not receiver.wait_for(1, timeout=120):
                raise AssertionError(f"no webhook arrived; deliverer:\n{tail(deliverer.log_path)}"  # type: ignore[attr-defined]
                                     f"\nworker:\n{tail(w.log_path)}")
        finally:
            w.stop()
    ingested = headers_by_event(settings, settings.topics.events, "event_id", 2)
    event_trace = trace_of(ingested["t-visit"].get("traceparent"))  # the ingest's span, a Kafka header
    [alert_row] = store.outbox_after(0, 10)
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        [(stored,)] = conn.exec_driver_sql("SELECT traceparent FROM alert_outbox").all()
    store.close()
    alerts = headers_by_event(settings, settings.topics.alerts, "alert_id", 1)
    [delivered] = receiver.state.accepted

    assert trace_of(ingested["t-reg"]["traceparent"]) != event_trace  # every ingested event has its own trace
    assert delivered.body["alert_id"] == alert_row["message"]["alert_id"]
    assert trace_of(stored) == event_trace  # the worker's "apply event" span, kept with the outbox row
    assert trace_of(alerts[delivered.body["alert_id"]]["traceparent"]) == event_trace  # the relay's span
    assert trace_of(delivered.traceparent) == event_trace  # the POST: the same trace, end to end
    spans = {ingested["t-visit"]["traceparent"].decode(), stored,
             alerts[delivered.body["alert_id"]]["traceparent"].decode(), delivered.traceparent}
    assert len(spans) == 4  # each hop a span of its own
