"""The outbox relay publishes each row with the trace context the worker stored with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from careledger.settings import Settings
from processors.alert_relay import AlertRelay
from producers.publisher import EventPublisher
from tests.support.runtime import runtime_for
from tests.unit.producers.conftest import FakeProducer
from tests.unit.projections.sql.test_notices import Clock, home_visit, registered, store
from tests.unit.projections.sql.test_outbox_traces import INGESTED, raw


def test_relayed_alert_messages_carry_a_child_of_the_ingested_events_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARELEDGER_TOPIC_NAMESPACE", "")
    s = store(tmp_path, Clock("2024-06-30T02:00:00+00:00"))
    runtime_for(s).apply([raw(0, registered("2024-03-22")),
                          raw(1, home_visit("v-1", "2024-06-29", hazards=["unsafe_housing"]), INGESTED)])
    [row] = s.outbox_pending(10)
    producer = FakeProducer()
    relay = AlertRelay(s, EventPublisher(Settings.from_env(), producer=producer))
    assert relay.drain() == 1 and s.outbox_pending(10) == []
    [(_key, message)] = producer.messages("careledger.alerts")
    [header] = producer.traceparents("careledger.alerts")
    assert message["outbox_seq"] == row["seq"] and json.loads(json.dumps(message))["rule"] == "visit_hazard"
    assert header.split("-")[1] == INGESTED.split("-")[1]  # the event's trace ...
    assert header not in (row["traceparent"], INGESTED)  # ... in a span of the relay's own
