"""``GET /api/status`` against the real broker: lag is the number of produced events the store has
not applied yet, and falls to 0 (caught_up) once they are applied with their Kafka positions."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from producers.publisher import EventPublisher
from projections import open_store
from projections.api.app import create_app

pytestmark = pytest.mark.integration

N_EVENTS = 25


def events() -> list[dict]:
    out = []
    for i in range(N_EVENTS):
        out.append({"event_id": f"st-{i}", "type": "payment.disbursed", "version": 1,
                    "occurred_at": "2024-03-05T10:12:00+08:00", "person_id": f"p{i % 7}", "town": "城关镇",
                    "village": None, "source": "test",
                    "payload": {"program": "living_subsidy", "amount_fen": 50_000 + i, "period": "2024-03"}})
    return out


def consume_all(settings: Settings, expected: int) -> list[Consumed]:
    consumer = KafkaConsumer(settings.topics.events, **settings.kafka_client_options(),
                             auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    got: list[Consumed] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [Consumed(r.partition, r.offset, json.loads(r.value)) for r in records]
    finally:
        consumer.close()
    return got


def test_status_lag_with_real_broker(kafka_settings: Settings) -> None:
    store = open_store(kafka_settings.sql_url, default_rules(), topic=kafka_settings.topics.events)
    store.migrate()
    app = create_app(kafka_settings, store=store)
    with TestClient(app) as client:
        before = client.get("/api/status")
        assert before.status_code == 200, before.text
        assert before.json()["lag"] == 0 and before.json()["caught_up"] is True

        with EventPublisher(kafka_settings) as publisher:
            for event in events():
                publisher.publish(event)
            publisher.flush()

        answer = client.get("/api/status").json()
        assert answer["lag"] == N_EVENTS and answer["caught_up"] is False
        assert answer["projections"]["sql"]["lag"] == N_EVENTS
        assert sum(answer["events_end_offsets"].values()) == N_EVENTS
        assert len(answer["events_end_offsets"]) == kafka_settings.event_partitions
        assert client.get("/readyz").json() == {"ready": True, "store": "ok", "kafka": "ok"}

        records = consume_all(kafka_settings, N_EVENTS)
        assert len(records) == N_EVENTS
        first = sorted(records, key=lambda r: (r.partition, r.offset))
        store.apply_batch(first[:10])
        partial = client.get("/api/status").json()
        assert partial["lag"] == N_EVENTS - 10

        store.apply_batch(first[10:])
        done = client.get("/api/status").json()
        assert done["lag"] == 0 and done["caught_up"] is True
        assert client.get("/api/counts?kind=payment").json()["events"] == N_EVENTS
    store.close()
