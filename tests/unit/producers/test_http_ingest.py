from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from producers import http_ingest
from producers.publisher import EventPublisher
from tests.unit.producers.conftest import FakeProducer
from tests.unit.schemas.examples import event

ID = "110101199003071233"


@pytest.fixture
def client(publisher: EventPublisher) -> TestClient:
    app = FastAPI()
    app.include_router(http_ingest.router)
    app.dependency_overrides[http_ingest.get_publisher] = lambda: publisher
    return TestClient(app)


def test_single_event(client: TestClient, fake_producer: FakeProducer) -> None:
    response = client.post("/api/events", json=event("payment.disbursed", person_id=None, id_number=ID))
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    [(key, published)] = fake_producer.messages("careledger.events")
    assert key == published["person_id"] and ID not in repr(fake_producer.sent)


@pytest.mark.parametrize("wrap", [lambda items: items, lambda items: {"events": items}])
def test_batch_with_rejects_and_duplicates(client: TestClient, fake_producer: FakeProducer, wrap: object) -> None:
    bad = event("job.posted", event_id="bad")
    bad["payload"]["positions"] = 0
    items = [event("need.registered"), bad, event("need.registered"), event("job.posted", event_id="j")]
    response = client.post("/api/events", json=wrap(items))  # type: ignore[operator]
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {k: body[k] for k in ("accepted", "duplicates", "rejected")} == {
        "accepted": 2, "duplicates": 1,
        "rejected": [{"index": 1, "reasons": ["payload.positions: must be an integer >= 1"]}]}
    assert body["status"] == 422 and "1 of" in body["detail"]
    assert len(fake_producer.messages("careledger.events")) == 2
    [(_, dead)] = fake_producer.messages("careledger.events.dlq")
    assert dead["origin"] == {"source": "http", "line": 1}


def test_bad_bodies(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.post("/api/events", content=b"{nope").status_code == 400
    assert client.post("/api/events", content=b"\xff").status_code == 400
    assert client.post("/api/events", json={"events": 5}).status_code == 400
    monkeypatch.setattr(http_ingest, "MAX_BODY_BYTES", 100)
    assert client.post("/api/events", content=json.dumps(event("need.registered"))).status_code == 413


def test_publish_failure_is_503(client: TestClient, fake_producer: FakeProducer) -> None:
    fake_producer.fail_topics.add("careledger.events")
    assert client.post("/api/events", json=event("need.registered")).status_code == 503


def test_unwired_publisher_is_503() -> None:
    app = FastAPI()
    app.include_router(http_ingest.router)
    assert TestClient(app).post("/api/events", json=event("need.registered")).status_code == 503


def test_a_lone_surrogate_is_one_rejected_event(client: TestClient, fake_producer: FakeProducer) -> None:
    """Issue 15.1: a lone surrogate escape in one event answered 500 and lost the valid events of
    the same request; it is one rejected event (422), the others are published."""
    items = [event("need.registered", event_id="h-1"), event("need.registered", event_id="h-2"),
             event("need.registered", event_id="h-3")]
    texts = [json.dumps(item, ensure_ascii=False) for item in items]
    texts[1] = texts[1].replace('"东村"', '"\\ud800"')
    body = "[" + ",".join(texts) + "]"
    response = client.post("/api/events", content=body.encode("utf-8"))
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    [rejected] = answer["rejected"]
    assert rejected["index"] == 1 and "lone UTF-16 surrogate" in rejected["reasons"][0]
    assert [e["event_id"] for _, e in fake_producer.messages("careledger.events")] == ["h-1", "h-3"]
    [(_, dead)] = fake_producer.messages("careledger.events.dlq")
    assert dead["record"]["village"] == "\\ud800"


def test_a_callers_traceparent_is_the_parent_of_the_events_spans(client: TestClient,
                                                                 fake_producer: FakeProducer) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    items = [event("need.registered"), event("job.posted", event_id="j")]
    assert client.post("/api/events", json=items, headers={"traceparent": caller}).status_code == 200
    assert client.post("/api/events", json=[event("need.registered", event_id="n2")],
                       headers={"traceparent": "00-zz-broken"}).status_code == 200  # ignored, not an error
    first, second, third = fake_producer.traceparents("careledger.events")
    assert first.split("-")[1] == second.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert len({first, second, caller}) == 3  # each event its own span of the caller's trace
    assert third.split("-")[1] != "0af7651916cd43dd8448eb211c80319c"
