"""Issue 14.4 and 14.5 end to end: need warnings and escalations reach every delivery channel once.

A real broker, a real ``careledger process`` worker and the real webhook deliverer; the worker
runs with a shifted clock (``CARELEDGER_NOW`` = 2024-07-01 09:00 Shanghai, the sweep at 08:00,
escalation after 0.01 h = 36 s), so the test sees in two minutes what a caseworker sees over days:

1. an unmet employment need (registered 2024-03-01, due more than 60 days later) is due: the first sweep
   after the worker caught up publishes it;
2. a profile change dated 2024-06-30 sets a certificate expiry within 60 days: the batch that
   applies it publishes that warning (the event path), without waiting for tomorrow's sweep;
3. a visit finding abuse_or_neglect raises a critical alert; nobody acknowledges it: 36 s after it
   was raised it is published again, ``escalated: true``;
4. the fulfilling events (a job placement naming the need, a renewed certificate) publish one
   clearing each;
5. the worker restarts (and sweeps again): nothing is published twice.

Each change is checked on the three channels: the ``careledger.warnings`` / ``careledger.alerts``
topics, the SSE stream (with its kind/rule/town filters) and webhooks (with rule filters).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from careledger.settings import Settings
from projections.api.app import create_app
from projections.webhooks.receiver import Receiver
from tests.support.delivery import ApiServer, read_sse, run_deliverer
from tests.support.pipeline import open_test_store, publish, tail, wait_caught_up, worker
from tests.support.reliability import record

pytestmark = pytest.mark.integration

TOWN_A, TOWN_B = "锦屏街道", "岳林街道"
PRETEND_NOW = "2024-07-01T09:00:00+08:00"
ESCALATE_AFTER_H = 0.01  # 36 s


def ev(eid: str, type_: str, person: str, town: str, when: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "version": 1, "occurred_at": f"{when}T10:00:00+08:00",
            "person_id": person, "town": town, "village": None, "source": "test", "payload": payload}


REG = {"category": "physical", "grade": 3, "birth_date": "1970-01-01", "hardship": False,
       "certificate_expires": "2030-01-01"}  # grade 3, not hardship: no visit or nursing warnings


def history() -> list[dict[str, Any]]:
    return [
        ev("reg-old", "person.registered", "p-old", TOWN_A, "2024-01-10", REG),
        ev("need-old", "need.registered", "p-old", TOWN_A, "2024-03-01", {"need_id": "n-old", "need": "employment"}),
        ev("reg-new", "person.registered", "p-new", TOWN_B, "2024-05-01", REG),
        ev("reg-crit", "person.registered", "p-crit", TOWN_A, "2024-06-20", REG),
        ev("visit-crit", "visit.completed", "p-crit", TOWN_A, "2024-06-30",
           {"visit_kind": "home_visit", "visitor": "w1", "hazards": ["abuse_or_neglect"]}),
    ]


def read_topic(settings: Settings, topic: str, *, want: int, timeout: float) -> list[dict[str, Any]]:
    """Every message of ``topic`` from the beginning: at least ``want``, or all there after ``timeout``."""
    consumer = KafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    try:
        deadline = time.monotonic() + 30
        while not consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"no topic {topic}"
            time.sleep(0.2)
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < want:
            for records in consumer.poll(timeout_ms=500).values():
                got += [json.loads(r.value) for r in records]
        for records in consumer.poll(timeout_ms=1000).values():  # anything beyond ``want``
            got += [json.loads(r.value) for r in records]
        return got
    finally:
        consumer.close()


def kinds(messages: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(kind, rule) -> how many distinct changes (a relay may re-send one: same outbox_seq)."""
    distinct = {(m["warning_id"], m["outbox_seq"]): m for m in messages}
    return Counter((m["kind"], m["rule"]) for m in distinct.values())


def test_warnings_and_escalations_reach_every_channel_once(kafka_settings: Settings) -> None:
    settings = dataclasses.replace(kafka_settings, warning_sweep_at="08:00", escalate_after_h=ESCALATE_AFTER_H,
                                   pretend_now=datetime.fromisoformat(PRETEND_NOW))
    store = open_test_store(settings, settings.sql_url)
    app = create_app(settings, store=store)
    publish(settings, history())
    w = worker(settings, "sql", settings.sql_url, "warnings")
    with ApiServer(app) as api, Receiver() as receiver, run_deliverer(settings) as deliverer:
        tokens = app.state.tokens
        admin = tokens.create("root", "admin")
        auth = {"Authorization": f"Bearer {admin}"}
        every = httpx.post(api.url + "/api/webhooks", headers=auth, json={"url": receiver.url}, timeout=10).json()
        needs = httpx.post(api.url + "/api/webhooks", headers=auth, timeout=10,
                           json={"url": receiver.url, "rules": ["need_unmet"]}).json()
        receiver.state.secrets += [every["secret"], needs["secret"]]
        started = time.monotonic()
        w.start()
        try:
            wait_caught_up(settings, {"sql": store}, workers=[w], timeout=180)
            # (1) the sweep, once caught up: the unmet need
            due = read_topic(settings, settings.topics.warnings, want=1, timeout=90)
            assert kinds(due) == {("warning.due", "need_unmet"): 1}, (due, tail(w.log_path))
            need_warning = due[0]["warning_id"]
            assert due[0]["person_id"] == "p-old" and due[0]["since"] == "2024-05-01"  # more than 60 days after

            # (2) the event that makes a warning due publishes it in its batch
            publish(settings, [ev("prof-new", "person.profile_changed", "p-new", TOWN_B, "2024-06-30",
                                  {"certificate_expires": "2024-07-20"})])
            both = read_topic(settings, settings.topics.warnings, want=2, timeout=60)
            assert kinds(both) == {("warning.due", "need_unmet"): 1, ("warning.due", "certificate_expiring"): 1}

            # (3) escalation: the critical alert, published again once, 36 s after it was raised
            alerts = read_topic(settings, settings.topics.alerts, want=2, timeout=120)
            escalated = [m for m in alerts if m.get("escalated")]
            assert len({m["outbox_seq"] for m in escalated}) == 1, alerts
            raised_at = store.alerts(person_id="p-crit")["items"][0]["raised_at"]
            lag = (datetime.fromisoformat(escalated[0]["escalated_at"])
                   - datetime.fromisoformat(raised_at)).total_seconds()
            assert ESCALATE_AFTER_H * 3600 <= lag <= ESCALATE_AFTER_H * 3600 + 25, lag
            assert httpx.get(api.url + "/api/alerts?escalated=true", headers=auth,
                             timeout=10).json()["total"] == 1

            # (4) the fulfilling events: one clearing each
            publish(settings, [
                ev("job-old", "job.placed", "p-old", TOWN_A, "2024-07-01",
                   {"placement_kind": "proportional", "employer": "emp1", "need_id": "n-old"}),
                ev("prof-new-2", "person.profile_changed", "p-new", TOWN_B, "2024-07-01",
                   {"certificate_expires": "2029-07-01"}),
            ])
            four = read_topic(settings, settings.topics.warnings, want=4, timeout=60)
            assert kinds(four) == {("warning.due", "need_unmet"): 1, ("warning.due", "certificate_expiring"): 1,
                                   ("warning.cleared", "need_unmet"): 1,
                                   ("warning.cleared", "certificate_expiring"): 1}, four
            first_pass = time.monotonic() - started

            # (5) restart: the new process sweeps again once caught up; nothing is sent twice
            w.stop()
            w.start()
            wait_caught_up(settings, {"sql": store}, workers=[w], timeout=180)
            deadline = time.monotonic() + 60
            while "warning sweep 2024-07-01" not in w.log_path.read_text().split("stopped (exit 0)")[-1]:
                assert time.monotonic() < deadline, tail(w.log_path)
                time.sleep(1)
            again = read_topic(settings, settings.topics.warnings, want=5, timeout=15)
            assert kinds(again) == kinds(four), again
            assert len({m["outbox_seq"] for m in read_topic(settings, settings.topics.alerts, want=3, timeout=10)
                        if m.get("escalated")}) == 1

            # SSE: the same four changes, as warning events; filters by kind, rule and town
            names: list[str] = []
            streamed = read_sse(api.url, admin, 4, last_event_id=0, query="kind=warning", events=names)
            assert names == ["warning"] * 4
            assert Counter((m["kind"], m["rule"]) for _s, m in streamed) == kinds(four)
            town_b = read_sse(api.url, admin, 2, last_event_id=0, query=f"kind=warning&town={TOWN_B}")
            assert {m["person_id"] for _s, m in town_b} == {"p-new"}
            only_need = read_sse(api.url, admin, 2, last_event_id=0, query="rule=need_unmet")
            assert {m["warning_id"] for _s, m in only_need} == {need_warning}

            # webhooks: the unfiltered subscription gets the four warnings (and the alert, its
            # escalation), the need_unmet one only its two
            assert receiver.wait_for(4 + 2 + 2, timeout=90), receiver.state.accepted

            def delivered(sub: dict[str, Any]) -> list[str]:
                log = httpx.get(f"{api.url}/api/webhooks/{sub['subscription_id']}/deliveries?limit=100",
                                headers=auth, timeout=10).json()
                return sorted(i["alert_id"] for i in log["items"] if i["status"] == "delivered")

            changes = {(m["warning_id"], m["outbox_seq"]) for m in four}
            assert len(changes) == 4 and len({wid for wid, _seq in changes}) == 2
            assert [i for i in delivered(every) if i.startswith("W")] == sorted(wid for wid, _seq in changes)
            assert delivered(needs) == [need_warning, need_warning]
            assert receiver.state.duplicates == [] and receiver.state.bad_signatures == []
            assert deliverer.poll() is None
        finally:
            w.stop()
            store.close()
    record("fault", "need warnings and escalation: sweep, event, clearing, restart",
           claim="2 warnings due (sweep and event) and 2 cleared reached Kafka, SSE and webhooks exactly once; "
                 "a critical alert escalated {lag_s} s after it was raised (configured {after_s} s); a restart "
                 "and second sweep re-sent nothing ({seconds} s for the first pass)",
           lag_s=round(lag, 1), after_s=ESCALATE_AFTER_H * 3600, seconds=round(first_pass, 1))
