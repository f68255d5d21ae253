from __future__ import annotations

import re

import pytest

from producers.publisher import MAX_DLQ_RECORD_CHARS, PRODUCER_DEFAULTS, EventPublisher, PublishError
from schemas import validate_event
from tests.unit.producers.conftest import FakeProducer
from tests.unit.schemas.examples import event


def test_no_loss_producer_settings() -> None:
    assert PRODUCER_DEFAULTS["acks"] == "all"
    assert PRODUCER_DEFAULTS["enable_idempotence"] is True
    assert PRODUCER_DEFAULTS["compression_type"] == "lz4"
    assert PRODUCER_DEFAULTS["batch_size"] == 256 * 1024
    assert 5 <= PRODUCER_DEFAULTS["linger_ms"] <= 20
    assert PRODUCER_DEFAULTS["retries"] > 0


def test_publish_keys_and_compact_json(publisher: EventPublisher, fake_producer: FakeProducer) -> None:
    person = validate_event(event("payment.disbursed")).event
    posting = validate_event(event("job.posted")).event
    publisher.publish(person)
    publisher.publish(posting)
    publisher.flush()
    topic, key, value = fake_producer.sent[0]
    assert topic == "careledger.events" and key == person["person_id"].encode()
    assert b", " not in value and "锦屏街道".encode() in value
    assert fake_producer.sent[1][1] == "某某公司".encode()


def test_refuses_raw_ids(publisher: EventPublisher) -> None:
    raw = validate_event(event("payment.disbursed", person_id=None, id_number="110101199003071233")).event
    with pytest.raises(ValueError):
        publisher.publish(raw)


def test_dlq_body_is_redacted_and_bounded(publisher: EventPublisher, fake_producer: FakeProducer) -> None:
    publisher.publish_dlq({"id_number": "110101199003071234", "x": 1}, ["payload.x: unknown field"],
                          {"source": "f.jsonl", "line": 3})
    publisher.publish_dlq("y" * (MAX_DLQ_RECORD_CHARS * 2), ["too long"], {"source": "f", "line": 4})
    publisher.flush()
    (key, first), (_, second) = fake_producer.messages("careledger.events.dlq")
    assert key is None
    assert first == {"reasons": ["payload.x: unknown field"], "origin": {"source": "f.jsonl", "line": 3},
                     "record": {"id_number": "[ID-REDACTED]", "x": 1}}
    assert len(second["record"]) < MAX_DLQ_RECORD_CHARS + 100


def test_failures_raise_from_flush(publisher: EventPublisher, fake_producer: FakeProducer) -> None:
    fake_producer.fail_topics.add("careledger.events")
    publisher.publish(validate_event(event("payment.disbursed")).event)
    with pytest.raises(PublishError, match="1 message"):
        publisher.flush()
    publisher.flush()  # reported once


def test_publish_and_wait(publisher: EventPublisher, fake_producer: FakeProducer) -> None:
    e = validate_event(event("payment.disbursed")).event
    publisher.publish_and_wait([(e, None)])
    fake_producer.fail_topics.add("careledger.events")
    with pytest.raises(PublishError):
        publisher.publish_and_wait([(e, None)])


def test_context_manager_closes(publisher: EventPublisher, fake_producer: FakeProducer) -> None:
    with publisher:
        pass
    assert fake_producer.closed


# ---- W3C trace context (careledger/tracing.py) -------------------------------------------------
TRACEPARENT = r"00-[0-9a-f]{32}-[0-9a-f]{16}-01"
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def trace_of(traceparent: str | None) -> str:
    assert traceparent is not None and re.fullmatch(TRACEPARENT, traceparent), traceparent
    return traceparent.split("-")[1]


def test_every_event_message_carries_its_own_traceparent(publisher: EventPublisher,
                                                        fake_producer: FakeProducer) -> None:
    payment = validate_event(event("payment.disbursed")).event
    registered = validate_event(event("person.registered")).event  # sensitive: held, sealed, then sent
    publisher.publish(payment)
    publisher.publish(registered)
    publisher.publish(validate_event(event("payment.disbursed", event_id="e-2")).event)
    publisher.flush()
    sent = fake_producer.traceparents("careledger.events")
    assert len(sent) == 3
    assert len({trace_of(tp) for tp in sent}) == 3  # one trace per ingested event


def test_http_ingest_continues_the_callers_trace(publisher: EventPublisher, fake_producer: FakeProducer) -> None:
    e = validate_event(event("payment.disbursed")).event
    publisher.publish_and_wait([(e, None)], parent=CALLER)
    publisher.publish_and_wait([(e, None)], parent="not-a-traceparent")  # ignored: a new trace
    caller, garbage = fake_producer.traceparents("careledger.events")
    assert trace_of(caller) == CALLER.split("-")[1] and caller != CALLER  # a child span of the caller's
    assert trace_of(garbage) != CALLER.split("-")[1]


def test_relayed_alerts_carry_a_child_of_their_outbox_rows_trace(publisher: EventPublisher,
                                                                fake_producer: FakeProducer) -> None:
    rows = [{"seq": 1, "channel": "alert", "alert_id": "A1", "alert": {"alert_id": "A1"}, "traceparent": CALLER},
            {"seq": 2, "channel": "warning", "alert_id": "W1", "alert": {"warning_id": "W1"}, "traceparent": None}]
    publisher.publish_alerts(rows)
    [alert] = fake_producer.traceparents("careledger.alerts")
    [warning] = fake_producer.traceparents("careledger.warnings")
    assert trace_of(alert) == CALLER.split("-")[1] and alert != CALLER
    assert trace_of(warning) != CALLER.split("-")[1]  # a row without a trace: the relay starts one


def test_a_dead_letter_keeps_the_trace_of_its_record(publisher: EventPublisher, fake_producer: FakeProducer) -> None:
    publisher.publish_dlq("{bad", ["not JSON"], {"source": "careledger.events"}, traceparent=CALLER)
    publisher.publish_dlq("{bad", ["not JSON"], {"source": "careledger.events"}, traceparent="garbage")
    publisher.publish_dlq("{bad", ["not JSON"], {"source": "f.jsonl", "line": 1})
    publisher.flush()
    assert fake_producer.traceparents("careledger.events.dlq") == [CALLER, None, None]
