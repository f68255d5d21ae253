"""Alert delivery end to end, against the real broker and a real processor worker:

(a) a Kafka consumer — the example of docs/alert-delivery.md, extracted and run as written;
(b) the SSE stream, with a reconnect using Last-Event-ID: no gap, no repeat;
(c) webhooks to a real HTTP receiver on 127.0.0.1 that fails the first 2 tries of every delivery:
    every alert delivered, none twice with the same delivery id, every signature verifies.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from careledger.settings import Settings
from projections.api.app import create_app
from projections.webhooks.receiver import Receiver
from projections.webhooks.signing import delivery_id
from tests.support.delivery import ApiServer, read_sse, run_deliverer
from tests.support.pipeline import REPO_ROOT, open_test_store, publish, tail, wait_caught_up, worker

pytestmark = pytest.mark.integration

TOWN_A, TOWN_B = "锦屏街道", "岳林街道"
HAZARDS = ["unsafe_housing", "mental_health_crisis"]
N_PERSONS = 8


def ev(eid: str, type_: str, person: str, town: str, when: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "version": 1, "occurred_at": f"{when}T10:00:00+08:00",
            "person_id": person, "town": town, "village": None, "source": "test", "payload": payload}


def events() -> list[dict[str, Any]]:
    out = []
    reg = {"category": "physical", "grade": 2, "birth_date": "1970-01-01", "hardship": True,
           "certificate_expires": "2030-01-01"}
    for i in range(N_PERSONS):
        town = TOWN_A if i % 2 else TOWN_B
        out.append(ev(f"reg-{i}", "person.registered", f"p{i}", town, "2024-01-10", reg))
        out.append(ev(f"visit-{i}", "visit.completed", f"p{i}", town, "2024-04-01",
                      {"visit_kind": "home_visit", "visitor": "w1", "hazards": HAZARDS}))
    pay = {"program": "living_subsidy", "amount_fen": 50_000, "period": "2024-03"}
    out.append(ev("pay-1", "payment.disbursed", "p1", TOWN_A, "2024-03-05", pay))
    out.append(ev("pay-2", "payment.disbursed", "p1", TOWN_A, "2024-03-06", pay))  # duplicate_payment
    out.append(ev("visit-0", "visit.completed", "p0", TOWN_B, "2024-04-01",  # re-sent: no new alert
                  {"visit_kind": "home_visit", "visitor": "w1", "hazards": HAZARDS}))
    return out


EXPECTED_CHANGES = N_PERSONS * len(HAZARDS) + 1


def doc_example() -> str:
    text = (REPO_ROOT / "docs" / "alert-delivery.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- example: kafka-consumer -->\s*```python\n(.*?)```", text, re.S)
    assert found, "docs/alert-delivery.md lost its kafka-consumer example"
    code = found.group(1)
    assert len(code.strip().splitlines()) <= 25
    return code


@pytest.fixture
def deliverer(kafka_settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    with run_deliverer(kafka_settings) as proc:
        yield proc


def test_alerts_reach_kafka_sse_and_webhook_subscribers(kafka_settings: Settings,
                                                        deliverer: subprocess.Popen[bytes]) -> None:
    settings = kafka_settings
    store = open_test_store(settings, settings.sql_url)
    app = create_app(settings, store=store)
    w = worker(settings, "sql", settings.sql_url, "delivery")
    with ApiServer(app) as api, Receiver(fail_first=2) as receiver:
        tokens = app.state.tokens
        admin = tokens.create("root", "admin")
        caseworker = tokens.create("cw-a", "caseworker", [TOWN_A])
        auth = {"Authorization": f"Bearer {admin}"}
        made = httpx.post(api.url + "/api/webhooks", headers=auth, json={"url": receiver.url}, timeout=10)
        assert made.status_code == 201, made.text
        sub = made.json()
        receiver.state.secrets.append(sub["secret"])
        hazard_only = httpx.post(api.url + "/api/webhooks", headers=auth, timeout=10,
                                 json={"url": receiver.url, "rules": ["visit_hazard"], "towns": [TOWN_A]}).json()
        receiver.state.secrets.append(hazard_only["secret"])

        # (b) an SSE client is connected from the start (it sees the first changes live)
        first_part: list[tuple[int, dict[str, Any]]] = []
        sse = threading.Thread(target=lambda: first_part.extend(read_sse(api.url, admin, 5, last_event_id=0)))
        sse.start()

        # (a) the documented Kafka consumer, in a thread, with its own group
        example: dict[str, Any] = {}
        exec(compile(doc_example(), "docs/alert-delivery.md", "exec"), example)  # noqa: S102 - our own doc
        kafka_got: list[dict[str, Any]] = []
        consumer = threading.Thread(target=example["consume"], args=(kafka_got.append,), kwargs={
            "bootstrap": settings.kafka_bootstrap, "topic": settings.topics.alerts,
            "group": f"{settings.processor_group}-doc-example",
            "stop": lambda: len(kafka_got) >= EXPECTED_CHANGES})
        consumer.start()

        w.start()
        try:
            publish(settings, events())
            wait_caught_up(settings, {"sql": store}, workers=[w], timeout=180)
            outbox = store.outbox_after(0, 10_000)
            seqs = [r["seq"] for r in outbox]
            assert len(seqs) == EXPECTED_CHANGES
            changes = {(r["message"]["alert_id"], r["seq"]) for r in outbox}

            # (a) Kafka: every change once (after de-duplication)
            consumer.join(timeout=120)
            assert not consumer.is_alive(), f"Kafka example got {len(kafka_got)} of {EXPECTED_CHANGES}"
            assert sorted((m["alert_id"], m["outbox_seq"]) for m in kafka_got) == sorted(changes)
            assert {m["rule"] for m in kafka_got} == {"visit_hazard", "duplicate_payment"}

            # (b) SSE: the first connection got 5 events and hung up; resume from its last id
            sse.join(timeout=60)
            assert [s for s, _a in first_part] == seqs[:5]
            rest = read_sse(api.url, admin, len(seqs) - 5, last_event_id=first_part[-1][0])
            streamed = [s for s, _a in first_part] + [s for s, _a in rest]
            assert streamed == seqs  # no gap, no repeat, in order
            assert {(a["alert_id"], s) for s, a in first_part + rest} == changes
            # a caseworker's stream only carries the alerts of her town
            towns = {a["town"] for _s, a in read_sse(api.url, caseworker, 9, last_event_id=0)}
            assert towns == {TOWN_A}

            # (c) webhooks: every change to the unfiltered subscription, town A hazards to the other
            hazard_a = {(r["message"]["alert_id"], r["seq"]) for r in outbox
                        if r["message"]["rule"] == "visit_hazard" and r["message"]["town"] == TOWN_A}
            expected_ids = {delivery_id(sub["subscription_id"], a, s) for a, s in changes} | \
                           {delivery_id(hazard_only["subscription_id"], a, s) for a, s in hazard_a}
            if not receiver.wait_for(len(expected_ids), timeout=120):
                deliveries = httpx.get(f"{api.url}/api/webhooks/{sub['subscription_id']}/deliveries",
                                       headers=auth, timeout=10).json()
                raise AssertionError(
                    f"{len(receiver.state.accepted)} of {len(expected_ids)} accepted; tries "
                    f"{dict(receiver.state.tries)}; log {deliveries['by_status']} {deliveries['items'][:2]}; "
                    f"deliverer:\n{tail(deliverer.log_path)}")  # type: ignore[attr-defined]
            state = receiver.state
            assert {r.delivery_id for r in state.accepted} == expected_ids
            assert state.duplicates == [] and state.bad_signatures == []
            assert all(r.signature_ok for r in state.accepted)
            assert all(state.tries[d] == 3 for d in expected_ids)  # failed twice, then accepted
            assert {(r.body["alert_id"], r.body["outbox_seq"]) for r in state.accepted} == changes
            log = httpx.get(f"{api.url}/api/webhooks/{sub['subscription_id']}/deliveries?limit=1000",
                            headers=auth, timeout=10).json()
            assert log["by_status"] == {"delivered": EXPECTED_CHANGES}
            assert {i["attempts"] for i in log["items"]} == {3}
            assert len({i["delivery_id"] for i in log["items"]}) == EXPECTED_CHANGES
            assert deliverer.poll() is None, tail(deliverer.log_path)  # type: ignore[attr-defined]
        finally:
            w.stop()
            store.close()
