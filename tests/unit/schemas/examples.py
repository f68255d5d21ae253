"""One valid example per (type, version) and the mutations that must be rejected."""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "event_id": "ev-1",
    "occurred_at": "2024-03-05T10:12:00+08:00",
    "person_id": "p0123456789abcdef0123456789abcdef",
    "town": "锦屏街道",
    "village": "东村",
    "source": "unit-test",
}

PAYLOADS: dict[tuple[str, int], dict[str, Any]] = {
    ("person.registered", 1): {"category": "physical", "grade": 2, "birth_date": "1960-02-29",
                               "hardship": True, "certificate_expires": "2028-12-31"},
    ("person.profile_changed", 1): {"grade": 1, "hardship": False},
    ("person.status_changed", 1): {"status": "deceased", "effective_date": "2024-03-01"},
    ("visit.completed", 1): {"visit_kind": "home_visit", "visitor": "王医生", "hazards": ["unsafe_housing"]},
    ("visit.completed", 2): {"visit_kind": "assessment", "visitor": "李", "hazards": [], "duration_minutes": 45},
    ("payment.disbursed", 1): {"program": "nursing_subsidy", "amount_fen": 12050, "period": "2024-03"},
    ("payment.reversed", 1): {"reverses": "ev-0", "reason": "重复发放"},
    ("need.registered", 1): {"need_id": "n-1", "need": "assistive_device"},
    ("service.delivered", 1): {"service": "assistive_device_fitting", "need_id": "n-1"},
    ("job.placed", 1): {"employer": "某某公司", "placement_kind": "proportional"},
    ("job.posted", 1): {"employer": "某某公司", "positions": 3},
    ("alert.handled", 1): {"alert_id": "A0123456789abcdef0123", "action": "acknowledge", "by": "caseworker-1",
                           "note": "已电话联系"},
    ("warning.snoozed", 1): {"warning_id": "W0123456789abcdef0123", "until": "2024-04-15", "reason": "住院中",
                             "by": "caseworker-1"},
}

# (type, payload mutation, the field path the reason must name)
BAD_PAYLOADS: list[tuple[str, dict[str, Any], str]] = [
    ("person.registered", {"category": "blind"}, "payload.category"),
    ("person.registered", {"grade": 5}, "payload.grade"),
    ("person.registered", {"grade": "2"}, "payload.grade"),
    ("person.registered", {"grade": True}, "payload.grade"),
    ("person.registered", {"grade": 2.0}, "payload.grade"),
    ("person.registered", {"birth_date": "1961-02-29"}, "payload.birth_date"),
    ("person.registered", {"birth_date": "1961-2-3"}, "payload.birth_date"),
    ("person.registered", {"hardship": 1}, "payload.hardship"),
    ("person.registered", {"hardship": "true"}, "payload.hardship"),
    ("person.registered", {"certificate_expires": None}, "payload.certificate_expires"),
    ("person.profile_changed", {"grade": None}, "payload.grade"),
    ("person.status_changed", {"status": "moved"}, "payload.status"),
    ("person.status_changed", {"effective_date": "2024-04-31"}, "payload.effective_date"),
    ("visit.completed", {"visit_kind": "phone"}, "payload.visit_kind"),
    ("visit.completed", {"hazards": ["fire"]}, "payload.hazards[0]"),
    ("visit.completed", {"hazards": "unsafe_housing"}, "payload.hazards"),
    ("visit.completed", {"visitor": ""}, "payload.visitor"),
    ("visit.completed", {"duration_minutes": 30}, "payload.duration_minutes"),  # not in v1
    ("payment.disbursed", {"amount_fen": -100}, "payload.amount_fen"),
    ("payment.disbursed", {"amount_fen": 0}, "payload.amount_fen"),
    ("payment.disbursed", {"amount_fen": "100"}, "payload.amount_fen"),
    ("payment.disbursed", {"amount_fen": 100.5}, "payload.amount_fen"),
    ("payment.disbursed", {"period": "2024-13"}, "payload.period"),
    ("payment.disbursed", {"period": "2024-03-01"}, "payload.period"),
    ("payment.disbursed", {"program": "bonus"}, "payload.program"),
    ("payment.disbursed", {"extra": 1}, "payload.extra"),
    ("payment.reversed", {"reverses": ""}, "payload.reverses"),
    ("need.registered", {"need": "money"}, "payload.need"),
    ("service.delivered", {"service": "massage"}, "payload.service"),
    ("job.placed", {"placement_kind": "remote"}, "payload.placement_kind"),
    ("job.posted", {"positions": 0}, "payload.positions"),
    ("job.posted", {"positions": True}, "payload.positions"),
    ("alert.handled", {"action": "ignore"}, "payload.action"),
    ("alert.handled", {"by": ""}, "payload.by"),
]


def event(event_type: str, example_version: int = 1, /, **changes: Any) -> dict[str, Any]:
    """A valid example of ``event_type`` (payload of ``example_version``), with ``changes`` applied."""
    data = copy.deepcopy(BASE)
    data["type"] = event_type
    if example_version != 1:
        data["version"] = example_version
    data["payload"] = copy.deepcopy(PAYLOADS[(event_type, example_version)])
    if event_type == "job.posted":
        del data["person_id"]
    data.update(changes)
    return data
