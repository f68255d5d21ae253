"""Issue 14.1-14.3 through the API: names for those allowed, the person page, queues with their
summaries, reasons in Chinese and English, assign / acknowledge / resolve / snooze as events."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from processors.domain.model import Consumed
from producers.publisher import EventPublisher
from projections.api.app import create_app
from projections.api.routes.aggregates import today_shanghai
from projections.registry import Registry
from tests.unit.producers.conftest import FakeProducer
from tests.unit.projections.api.conftest import ID_NUMBER, TOWN_A, TOWN_B, StubProbe, auth, ev

NAME, PHONE = "张秀英", "13800001111"


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def named(store: Any) -> None:
    """a1 (town A) has a name and a phone (sealed on the log; the store keeps them for the page)."""
    offset = max(store.offsets().values(), default=-1) + 1
    store.apply_batch([Consumed(0, offset, ev("prof-a1", "person.profile_changed", "a1", TOWN_A, "2024-02-01",
                                              {"name": NAME, "phone": PHONE}))])


@pytest.fixture
def app(settings: Any, store: Any, probe: StubProbe, producer: FakeProducer, named: None) -> Any:
    return create_app(settings, store=store, lag_probe=probe, publisher=EventPublisher(settings, producer=producer))


def events_sent(producer: FakeProducer, settings: Any) -> list[dict[str, Any]]:
    return [m for _k, m in producer.messages(settings.topics.events)]


def test_caseworkers_of_the_town_and_admins_see_who_the_alert_is_about(client: TestClient,
                                                                       tokens: dict[str, str]) -> None:
    mine = client.get("/api/alerts", headers=auth(tokens["caseworker"])).json()["items"]
    assert {a["person_town"] for a in mine} == {TOWN_A}
    dup = next(a for a in mine if a["rule"] == "duplicate_payment")
    assert (dup["name"], dup["phone"]) == (NAME, PHONE)
    assert "发放了 2 笔" in dup["reason_zh"]
    assert dup["reason_en"] and dup["clears_zh"] and dup["clears_en"]
    admin = client.get("/api/alerts?person_id=a1", headers=auth(tokens["admin"])).json()["items"]
    assert admin and admin[0]["name"] == NAME
    theirs = client.get("/api/alerts", headers=auth(tokens["caseworker_b"])).json()["items"]
    assert theirs and NAME not in json.dumps(theirs, ensure_ascii=False)
    assert client.get("/api/alerts", headers=auth(tokens["viewer"])).status_code == 403


def test_the_person_page_is_for_the_town_and_is_audited(client: TestClient, tokens: dict[str, str]) -> None:
    page = client.get("/api/persons/a1/record", headers=auth(tokens["caseworker"]))
    assert page.status_code == 200, page.text
    record = page.json()
    assert record["person"]["name"] == NAME and record["person"]["town"] == TOWN_A
    assert {e["event_id"] for e in record["events"]} >= {"reg-a1", "pay-a1", "pay-a1-again", "prof-a1"}
    assert [a["rule"] for a in record["open_alerts"]] == ["duplicate_payment"]
    assert all(a["reason_zh"] for a in record["open_alerts"])
    a2 = client.get("/api/persons/a2/record?as_of=2024-06-30", headers=auth(tokens["caseworker"])).json()
    assert "need_unmet" in [w["rule"] for w in a2["warnings"]] and all(w["reason_zh"] for w in a2["warnings"])
    assert client.get("/api/persons/a1/record", headers=auth(tokens["caseworker_b"])).status_code == 403
    assert client.get("/api/persons/a1/record", headers=auth(tokens["viewer"])).status_code == 403
    assert client.get("/api/persons/nobody/record", headers=auth(tokens["admin"])).status_code == 404
    audit = client.get("/api/audit?limit=100", headers=auth(tokens["admin"])).json()["items"]
    assert any(r["path"] == "/api/persons/a1/record" and r["token_name"] == "cw-a" and r["person_id"] == "a1"
               for r in audit)


def test_queue_order_filters_and_summary(client: TestClient, tokens: dict[str, str]) -> None:
    admin = auth(tokens["admin"])
    queue = client.get("/api/alerts?sort=queue&status=open", headers=admin).json()["items"]
    ranks = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    keys = [(ranks.get(a["severity"], 9), a["detected_at"]) for a in queue]
    assert keys == sorted(keys) and len(queue) >= 2
    summary = client.get("/api/alerts/summary", headers=admin).json()
    assert summary["total"] == len(queue) == sum(r["count"] for r in summary["rows"])
    assert {(r["rule"], r["town"]) for r in summary["rows"]} == {(a["rule"], a["person_town"]) for a in queue}
    mine = client.get("/api/alerts/summary", headers=auth(tokens["caseworker"])).json()
    assert {r["town"] for r in mine["rows"]} == {TOWN_A}
    warnings = client.get("/api/warnings/summary?as_of=2024-06-30", headers=auth(tokens["caseworker"])).json()
    listed = client.get("/api/warnings?as_of=2024-06-30", headers=auth(tokens["caseworker"])).json()
    assert warnings["total"] == listed["total"] > 0
    assert {r["town"] for r in warnings["rows"]} == {TOWN_A}
    assert all(w["reason_zh"] and w["clears_en"] for w in listed["items"])


def test_assign_acknowledge_resolve_are_events_first(client: TestClient, tokens: dict[str, str],
                                                     producer: FakeProducer, settings: Any) -> None:
    cw = auth(tokens["caseworker"])
    alert_id = next(a["alert_id"] for a in client.get("/api/alerts", headers=cw).json()["items"]
                    if a["rule"] == "duplicate_payment")
    assigned = client.post(f"/api/alerts/{alert_id}/assign", json={"assignee": "李娜", "note": "请核对"}, headers=cw)
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["assigned_to"] == "李娜" and assigned.json()["reason_zh"]
    assert client.get("/api/alerts?assigned_to=李娜", headers=cw).json()["total"] == 1
    client.post(f"/api/alerts/{alert_id}/acknowledge", headers=cw)
    done = client.post(f"/api/alerts/{alert_id}/resolve", json={"note": "已追回"}, headers=cw).json()
    assert done["status"] == "resolved"
    sent = [e for e in events_sent(producer, settings) if e["type"] == "alert.handled"]
    assert [(e["payload"]["action"], e["payload"].get("assignee"), e["payload"]["note"]) for e in sent] == [
        ("assign", "李娜", "请核对"), ("acknowledge", None, None), ("resolve", None, "已追回")]
    assert {e["person_id"] for e in sent} == {"a1"} and {e["payload"]["by"] for e in sent} == {"cw-a"}
    other = client.post(f"/api/alerts/{alert_id}/assign", json={"assignee": "x"}, headers=auth(tokens["caseworker_b"]))
    assert other.status_code == 403
    assert client.post(f"/api/alerts/{alert_id}/assign", json={"assignee": " "}, headers=cw).status_code == 422


def test_a_warning_is_snoozed_with_a_reason_and_comes_back(client: TestClient, tokens: dict[str, str],
                                                          producer: FakeProducer, settings: Any) -> None:
    cw = auth(tokens["caseworker"])
    today = today_shanghai()
    due = client.get("/api/warnings?person_id=a2&rule=need_unmet", headers=cw).json()["items"]
    assert [w["rule"] for w in due] == ["need_unmet"]
    warning_id = due[0]["warning_id"]
    until = (today + timedelta(days=14)).isoformat()
    body = {"person_id": "a2", "until": until, "reason": "本人住院，出院后再联系"}
    snoozed = client.post(f"/api/warnings/{warning_id}/snooze", json=body, headers=cw)
    assert snoozed.status_code == 200, snoozed.text
    assert snoozed.json()["snoozed"]["until"] == until
    assert client.get("/api/warnings?person_id=a2&rule=need_unmet", headers=cw).json()["items"] == []
    marked = client.get("/api/warnings?person_id=a2&rule=need_unmet&snoozed=true", headers=cw).json()["items"]
    assert marked[0]["snoozed"]["reason"] == body["reason"]
    later = (today + timedelta(days=15)).isoformat()
    assert [w["warning_id"] for w in client.get(f"/api/warnings?person_id=a2&rule=need_unmet&as_of={later}",
                                                headers=cw).json()["items"]] == [warning_id]
    summary = client.get("/api/warnings/summary", headers=cw).json()
    assert sum(r["snoozed"] for r in summary["rows"]) == 1
    sent = [e for e in events_sent(producer, settings) if e["type"] == "warning.snoozed"]
    assert [e["payload"] for e in sent] == [{"warning_id": warning_id, "until": until, "reason": body["reason"],
                                             "by": "cw-a"}]
    # what is refused: the past, too far ahead, another town, a warning that is not due
    for bad in ({**body, "until": today.isoformat()}, {**body, "until": (today + timedelta(days=400)).isoformat()},
                {**body, "until": "2024-13-01"}, {**body, "reason": ""}):
        assert client.post(f"/api/warnings/{warning_id}/snooze", json=bad, headers=cw).status_code == 422, bad
    assert client.post(f"/api/warnings/{warning_id}/snooze", json=body,
                       headers=auth(tokens["caseworker_b"])).status_code == 403
    assert client.post("/api/warnings/W0123456789abcdef0123/snooze", json=body, headers=cw).status_code == 404


def test_no_action_is_recorded_when_kafka_does_not_acknowledge(client: TestClient, tokens: dict[str, str],
                                                               producer: FakeProducer, settings: Any,
                                                               store: Any) -> None:
    producer.fail_topics.add(settings.topics.events)
    cw = auth(tokens["caseworker"])
    alert_id = next(a["alert_id"] for a in client.get("/api/alerts", headers=cw).json()["items"])
    assert client.post(f"/api/alerts/{alert_id}/assign", json={"assignee": "李娜"}, headers=cw).status_code == 503
    assert store.alert(alert_id).get("assigned_to") is None
    due = client.get("/api/warnings?person_id=a2", headers=cw).json()["items"]
    warning_id = due[0]["warning_id"]
    until = (today_shanghai() + timedelta(days=3)).isoformat()
    answer = client.post(f"/api/warnings/{warning_id}/snooze", json={"person_id": "a2", "until": until,
                                                                     "reason": "r"}, headers=cw)
    assert answer.status_code == 503
    assert client.get("/api/warnings?person_id=a2", headers=cw).json()["items"] == due


def test_names_are_gone_after_forget(client: TestClient, tokens: dict[str, str], store: Any) -> None:
    admin = auth(tokens["admin"])
    assert NAME in client.get("/api/persons/a1/record", headers=admin).text
    store.forget("a1", "tomb-1")
    assert client.get("/api/persons/a1/record", headers=admin).status_code == 404
    for url in ("/api/alerts", "/api/warnings?as_of=2024-06-30", "/api/alerts/stream?last_event_id=0&follow=false"):
        assert NAME not in client.get(url, headers=admin).text and PHONE not in client.get(url, headers=admin).text
    rows = json.dumps(store.snapshot_rows(), ensure_ascii=False, default=str)
    assert NAME not in rows and PHONE not in rows


def test_lists_narrow_to_a_town_within_the_callers(client: TestClient, tokens: dict[str, str]) -> None:
    """The dashboard's town cell: ``town=`` narrows a list; a caseworker never widens hers."""
    admin, cw = auth(tokens["admin"]), auth(tokens["caseworker"])
    every = client.get("/api/alerts", headers=admin).json()
    b_only = client.get(f"/api/alerts?town={TOWN_B}", headers=admin).json()
    assert 0 < b_only["total"] < every["total"]
    assert {a["person_town"] for a in b_only["items"]} == {TOWN_B}
    assert client.get(f"/api/alerts?town={TOWN_B}", headers=cw).json() == {"total": 0, "items": []}
    assert client.get(f"/api/alerts?town={TOWN_A}", headers=cw).json()["total"] == \
        client.get("/api/alerts", headers=cw).json()["total"]
    warned = client.get(f"/api/warnings?as_of=2024-06-30&town={TOWN_A}", headers=admin).json()
    assert warned["total"] > 0 and {w["town"] for w in warned["items"]} == {TOWN_A}
    assert client.get(f"/api/warnings?as_of=2024-06-30&town={TOWN_A}",
                      headers=auth(tokens["caseworker_b"])).json()["total"] == 0


def test_me_says_who_the_token_is(client: TestClient, tokens: dict[str, str]) -> None:
    assert client.get("/api/me", headers=auth(tokens["caseworker"])).json() == {
        "name": "cw-a", "role": "caseworker", "towns": [TOWN_A], "person_level": True, "admin": False}
    assert client.get("/api/me", headers=auth(tokens["viewer"])).json()["person_level"] is False
    assert client.get("/api/me").json() == {"name": None, "role": None, "towns": [], "person_level": False,
                                            "admin": False}
    assert client.get("/api/me", headers=auth("cl_not-a-token")).status_code == 401


SPACED_ID = f"{ID_NUMBER[:6]} {ID_NUMBER[6:10]} {ID_NUMBER[10:12]} {ID_NUMBER[12:14]} {ID_NUMBER[14:]}"


@pytest.mark.parametrize(("action", "body"), [
    ("assign", {"assignee": "李娜", "note": f"核实身份证 {ID_NUMBER} 后处理"}),
    ("assign", {"assignee": f"王 {SPACED_ID}"}),
    ("acknowledge", {"note": SPACED_ID}),
    ("resolve", {"note": f"证号{ID_NUMBER}"}),
    ("snooze", {"reason": f"证号 {ID_NUMBER}"}),
])
def test_free_text_holding_an_id_number_is_refused_without_echo(client: TestClient, tokens: dict[str, str],
                                                                producer: FakeProducer, action: str,
                                                                body: dict[str, Any]) -> None:
    """A note, assignee or snooze reason is published and stored as typed: one holding a national ID
    number (however written) is refused before it reaches Kafka, and the 422 does not repeat it."""
    cw = auth(tokens["caseworker"])
    if action == "snooze":
        warning_id = client.get("/api/warnings?person_id=a2", headers=cw).json()["items"][0]["warning_id"]
        url = f"/api/warnings/{warning_id}/snooze"
        body = {"person_id": "a2", "until": (today_shanghai() + timedelta(days=7)).isoformat(), **body}
    else:
        alert_id = next(a["alert_id"] for a in client.get("/api/alerts", headers=cw).json()["items"]
                        if a["rule"] == "duplicate_payment")
        url = f"/api/alerts/{alert_id}/{action}"
    answer = client.post(url, json=body, headers=cw)
    assert answer.status_code == 422, answer.text
    [field] = [k for k in body if k in {"note", "assignee", "reason"} and ID_NUMBER[6:10] in body[k]]
    assert answer.json()["errors"][0]["loc"] == ["body", field]
    assert "national ID number" in answer.json()["detail"]
    assert ID_NUMBER[:6] not in answer.text and ID_NUMBER[14:] not in answer.text
    assert producer.sent == []  # nothing published, so nothing recorded either


def test_actions_on_a_persons_alert_or_warning_are_audited_under_the_person(client: TestClient,
                                                                           tokens: dict[str, str]) -> None:
    """The person is in the alert or the body, not the URL: the audit row still names them, so
    /api/audit?person_id= finds every write about the person, refused ones included."""
    cw, admin = auth(tokens["caseworker"]), auth(tokens["admin"])
    alert_id = next(a["alert_id"] for a in client.get("/api/alerts", headers=cw).json()["items"]
                    if a["person_id"] == "a1")
    assert client.post(f"/api/alerts/{alert_id}/assign", json={"assignee": "李娜"}, headers=cw).status_code == 200
    assert client.post(f"/api/alerts/{alert_id}/acknowledge", headers=auth(tokens["caseworker_b"])).status_code == 403
    warning_id = client.get("/api/warnings?person_id=a2", headers=cw).json()["items"][0]["warning_id"]
    until = (today_shanghai() + timedelta(days=7)).isoformat()
    snoozed = client.post(f"/api/warnings/{warning_id}/snooze", json={"person_id": "a2", "until": until,
                                                                      "reason": "住院"}, headers=cw)
    assert snoozed.status_code == 200

    def writes(person_id: str) -> list[tuple[str, str, int]]:
        rows = client.get(f"/api/audit?person_id={person_id}&limit=1000", headers=admin).json()["items"]
        return sorted((r["token_name"], r["path"], r["status"]) for r in rows if r["method"] == "POST")

    assert writes("a1") == [("cw-a", f"/api/alerts/{alert_id}/assign", 200),
                            ("cw-b", f"/api/alerts/{alert_id}/acknowledge", 403)]
    assert writes("a2") == [("cw-a", f"/api/warnings/{warning_id}/snooze", 200)]


def test_person_level_snapshots_are_for_admins(client: TestClient, tokens: dict[str, str], store: Any,
                                                settings: Any, tmp_path: Any) -> None:
    """Before: a snapshot decided the town from where the person lived then, so a caseworker of
    town A read the name, phone and alerts of a1 after a1 had moved to town B (the live routes
    answered 403)."""
    snap = tmp_path / "march.sqlite3"
    src = sqlite3.connect(str(settings.sql_url.removeprefix("sqlite:///")))
    src.execute(f"VACUUM INTO '{snap}'")
    src.close()
    Registry(settings).register("march", f"sqlite:///{snap}", "sql", "snapshot", status="ready", until="2024-03-31")
    offset = max(store.offsets().values(), default=-1) + 1
    store.apply_batch([Consumed(0, offset, ev("move-a1", "person.profile_changed", "a1", TOWN_B, "2024-05-01",
                                              {"phone": PHONE}))])
    cw_a, admin = auth(tokens["caseworker"]), auth(tokens["admin"])
    assert client.get("/api/alerts", params={"person_id": "a1"}, headers=cw_a).status_code == 403
    for path, params in (("/api/alerts", {"person_id": "a1"}), ("/api/alerts", {}),
                         ("/api/warnings", {"as_of": "2024-06-30"})):
        answer = client.get(path, params={**params, "snapshot": "march"}, headers=cw_a)
        assert answer.status_code == 403, (path, answer.text)
        assert NAME not in answer.text and PHONE not in answer.text
    held = client.get("/api/alerts", params={"person_id": "a1", "snapshot": "march"}, headers=admin)
    assert held.status_code == 200 and held.json()["items"]
