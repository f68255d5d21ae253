"""Need warnings and escalations reach subscribers once (issue 14): by the sweep, by the event that
makes a warning due, cleared by the event that fulfils it; never twice, whatever the restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections.sql.store import SqlStore


class Clock:
    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at)

    def __call__(self) -> datetime:
        return self.now


def ev(eid: str, type_: str, payload: dict[str, Any], day: str, person: str = "p1", town: str = "锦屏街道") -> dict:
    return {"event_id": eid, "type": type_, "version": 1, "occurred_at": f"{day}T10:00:00+08:00",
            "person_id": person, "town": town, "village": None, "source": "t", "payload": payload}


def registered(day: str, person: str = "p1", **extra: Any) -> dict:
    return ev(f"r-{person}", "person.registered", {"category": "physical", "grade": 3, "birth_date": "1960-01-01",
                                                   "hardship": True, "certificate_expires": "2035-01-01", **extra},
              day, person)


def home_visit(eid: str, day: str, person: str = "p1", hazards: list[str] | None = None) -> dict:
    return ev(eid, "visit.completed", {"visit_kind": "home_visit", "visitor": "w", "hazards": hazards or []}, day,
              person)


def store(tmp_path: Path, clock: Clock) -> SqlStore:
    s = SqlStore(f"sqlite:///{tmp_path / 'n.sqlite3'}", default_rules(), clock=clock)
    s.migrate()
    return s


def published(s: SqlStore) -> list[dict[str, Any]]:
    return [row["alert"] for row in s.outbox_pending(10_000) if row["channel"] == "warning"]


def test_a_live_event_that_makes_a_warning_due_publishes_it_once_and_its_fulfilment_clears_it(tmp_path: Path) -> None:
    clock = Clock("2024-06-30T02:00:00+00:00")  # 10:00 in Shanghai
    s = store(tmp_path, clock)
    # registered 100 days ago, never visited: visit_overdue due since day 91, entered today
    s.apply_batch([Consumed(0, 0, registered("2024-03-22"))])
    assert published(s) == []  # an old event: the sweep publishes it, not the event
    s.apply_batch([Consumed(0, 1, ev("p-1", "person.profile_changed", {"phone": "13800001234"}, "2024-06-29"))])
    due = published(s)
    assert [(m["kind"], m["rule"]) for m in due] == [("warning.due", "visit_overdue")]
    assert due[0]["since"] == "2024-06-21" and due[0]["town"] == "锦屏街道" and due[0]["warning_id"].startswith("W")
    s.apply_batch([Consumed(0, 2, ev("p-2", "person.profile_changed", {"phone": "13800004321"}, "2024-06-30"))])
    assert len(published(s)) == 1  # still due: not again
    s.apply_batch([Consumed(0, 3, home_visit("v-1", "2024-06-30"))])
    after = published(s)
    assert [m["kind"] for m in after] == ["warning.due", "warning.cleared"]
    assert after[1]["warning_id"] == due[0]["warning_id"]
    s.apply_batch([Consumed(0, 3, home_visit("v-1", "2024-06-30"))])  # redelivered: nothing new
    assert len(published(s)) == 2


def test_the_sweep_publishes_what_is_due_once_whatever_the_restarts(tmp_path: Path) -> None:
    clock = Clock("2024-06-30T00:00:00+00:00")
    s = store(tmp_path, clock)
    s.apply_batch([Consumed(0, i, registered("2023-12-01", person=f"p{i}")) for i in range(5)])
    assert published(s) == []  # history: nothing by itself
    done = s.sweep_warnings()
    assert done.due == 5 and len(published(s)) == 5
    again = SqlStore(s.url, default_rules(), clock=clock)  # a restarted worker sweeping again
    assert again.sweep_warnings().due == 0 and len(published(again)) == 5


def test_a_snoozed_warning_is_not_published_until_the_snooze_ends(tmp_path: Path) -> None:
    clock = Clock("2024-06-30T00:00:00+00:00")
    s = store(tmp_path, clock)
    s.apply_batch([Consumed(0, 0, registered("2023-12-01"))])
    wid = s.warnings(datetime(2024, 6, 30).date())["items"][0]["warning_id"]
    snooze = ev("z-1", "warning.snoozed", {"warning_id": wid, "until": "2024-07-10", "reason": "住院", "by": "cw"},
                "2024-06-29")
    s.apply_batch([Consumed(0, 1, snooze)])
    assert s.sweep_warnings().due == 0
    assert s.warnings(datetime(2024, 6, 30).date())["total"] == 0
    assert s.warnings(datetime(2024, 6, 30).date(), snoozed_too=True)["items"][0]["snoozed"]["reason"] == "住院"
    clock.now += timedelta(days=11)
    assert s.sweep_warnings().due == 1


def test_a_critical_alert_unacknowledged_for_a_day_is_published_again_once(tmp_path: Path) -> None:
    clock = Clock("2024-06-30T00:00:00+00:00")
    s = store(tmp_path, clock)
    s.apply_batch([Consumed(0, 0, registered("2023-12-01")),
                   Consumed(0, 1, home_visit("v-1", "2024-06-29", hazards=["abuse_or_neglect", "unsafe_housing"]))])
    clock.now += timedelta(hours=23)
    assert s.escalate(after=timedelta(hours=24)).escalated == 0
    clock.now += timedelta(hours=2)
    done = s.escalate(after=timedelta(hours=24))
    assert done.escalated == 1  # the critical one; unsafe_housing is high
    escalated = [r["alert"] for r in s.outbox_pending(1000) if r["alert"].get("escalated")]
    assert [a["hazard"] for a in escalated] == ["abuse_or_neglect"]
    assert s.escalate(after=timedelta(hours=24)).escalated == 0


def test_an_acknowledged_critical_alert_is_not_escalated(tmp_path: Path) -> None:
    clock = Clock("2024-06-30T00:00:00+00:00")
    s = store(tmp_path, clock)
    s.apply_batch([Consumed(0, 0, registered("2023-12-01")),
                   Consumed(0, 1, home_visit("v-1", "2024-06-29", hazards=["medical_emergency"]))])
    alert = s.alerts()["items"][0]
    handled = ev("h-1", "alert.handled", {"alert_id": alert["alert_id"], "action": "acknowledge", "by": "cw",
                                         "note": "已联系"}, "2024-06-30")
    s.apply_batch([Consumed(0, 2, handled)])
    clock.now = datetime(2024, 7, 3, tzinfo=UTC)
    assert s.escalate(after=timedelta(hours=24)).escalated == 0
