"""The event catalogue as data: every type, its versions, each field's type, rule and sensitivity,
and one example - read from the models, so the documentation (``docs/events.md``, written by
``python -m schemas.export``) and the typed export (``projections/export.py``) cannot drift from
what validation enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from schemas import enums
from schemas.models import _PAYLOADS, SUPPORTED_VERSIONS
from schemas.privacy import SENSITIVE_FIELDS


@dataclass(frozen=True)
class FieldSpec:
    """One field of an event.  ``kind``: string, date, timestamp, month, integer, boolean or
    ``list of <kind>``; ``rule``: completes "must be ..."; ``since``: the first version with it."""

    name: str
    kind: str
    rule: str
    required: bool
    nullable: bool = False
    sensitive: bool = False
    since: int = 1
    maximum: int | None = None

    @property
    def item_kind(self) -> str | None:
        return self.kind.removeprefix("list of ") if self.kind.startswith("list of ") else None


#: what each type records (one line each, for people reading the catalogue)
PURPOSE: dict[str, str] = {
    "person.registered": "A person's disability registration (残疾人登记): category, grade, birth date, "
                         "hardship, certificate expiry.",
    "person.profile_changed": "A change of some registration fields (信息变更); the envelope's town and village "
                              "become the person's new place.",
    "person.status_changed": "The person's status (状态变更): active, cancelled (注销/迁出) or deceased.",
    "visit.completed": "A visit (走访): home visit, rehabilitation in the village, family doctor or assessment, "
                       "with the hazards seen (风险隐患).",
    "payment.disbursed": "A subsidy payment (补贴发放) of a program for a month, in fen.",
    "payment.reversed": "The reversal (冲正) of an earlier payment of the same person.",
    "need.registered": "A need (需求登记) with its own id, fulfilled later by a service or a job placement.",
    "service.delivered": "A service delivered (服务), maybe fulfilling a need.",
    "job.placed": "A job placement (就业安置), maybe fulfilling an employment need.",
    "job.posted": "An employer's job posting (岗位发布); no person.",
    "alert.handled": "An alert assigned, acknowledged or resolved through the API (an extension of the contract: "
                     "alert handling is on the log too).",
    "warning.snoozed": "A need warning put aside until a date with a reason, through the API (an extension of the "
                       "contract); it comes back then unless its fulfilling event arrived.",
}

ENVELOPE: tuple[FieldSpec, ...] = (
    FieldSpec("event_id", "string", "a string of 1-64 characters; the same event_id is the same event "
              "(counted once)", True),
    FieldSpec("type", "string", "one of the types below", True),
    FieldSpec("version", "integer", "an integer >= 1, the payload's schema version (default 1)", False),
    FieldSpec("occurred_at", "timestamp", "an RFC 3339 timestamp with offset, e.g. 2024-03-05T10:12:00+08:00, "
              "from CARELEDGER_OCCURRED_AT_EARLIEST (1949-10-01) to CARELEDGER_OCCURRED_AT_AHEAD_DAYS (3) "
              "days from now; its date in Asia/Shanghai is the event's date", True),
    FieldSpec("person_id", "string", "a pseudonymous person key (required for every type but job.posted, "
              "unless id_number is given); never an ID number", False, nullable=True),
    FieldSpec("id_number", "string", "an 18-character national ID number (17 digits + digit or X, valid check "
              "digit; blanks, dashes and full-width digits are fine) instead of person_id: the producer "
              "replaces it by person_id = HMAC-SHA256 and drops it (never on Kafka)", False, nullable=True),
    FieldSpec("town", "string", "one of the district's towns (CARELEDGER_TOWNS; the 12 of 奉化区 by default), "
              "compared after Unicode NFKC without blanks or invisible characters", True),
    FieldSpec("village", "string", "a non-blank string of at most 100 characters (村/社区), stored NFKC-normalised "
              "without invisible characters", False, nullable=True),
    FieldSpec("source", "string", "a non-blank string of at most 200 characters: the system or terminal that "
              "recorded it", False, nullable=True),
    FieldSpec("payload", "object", "an object: the type's fields below", True),
)

#: one valid example per type, at its latest version (a unit test validates every one)
EXAMPLES: dict[str, dict[str, Any]] = {
    "person.registered": {"payload": {"category": "physical", "grade": 2, "birth_date": "1960-02-29",
                                      "hardship": True, "certificate_expires": "2028-12-31"}},
    "person.profile_changed": {"payload": {"grade": 1, "hardship": False}},
    "person.status_changed": {"payload": {"status": "deceased", "effective_date": "2024-03-01"}},
    "visit.completed": {"version": 2, "payload": {"visit_kind": "home_visit", "visitor": "王医生",
                                                  "hazards": ["unsafe_housing"], "duration_minutes": 45}},
    "payment.disbursed": {"payload": {"program": "nursing_subsidy", "amount_fen": 12050, "period": "2024-03"}},
    "payment.reversed": {"payload": {"reverses": "pay-2024-03-0001", "reason": "重复发放"}},
    "need.registered": {"payload": {"need_id": "need-0001", "need": "assistive_device"}},
    "service.delivered": {"payload": {"service": "assistive_device_fitting", "need_id": "need-0001"}},
    "job.placed": {"payload": {"employer": "宁波某某科技有限公司", "placement_kind": "proportional"}},
    "job.posted": {"payload": {"employer": "宁波某某科技有限公司", "positions": 3}},
    "alert.handled": {"payload": {"alert_id": "A3f2c9d0e1b7a4c5d6e7f", "action": "acknowledge",
                                  "by": "caseworker-jinping", "note": "已电话联系家属"}},
    "warning.snoozed": {"payload": {"warning_id": "W3f2c9d0e1b7a4c5d6e7f", "until": "2024-04-15",
                                    "reason": "家属告知四月初出院后再访视", "by": "caseworker-jinping"}},
}


def example(event_type: str) -> dict[str, Any]:
    """A whole example event of ``event_type`` (envelope and payload)."""
    spec = EXAMPLES[event_type]
    event: dict[str, Any] = {"event_id": f"{event_type.split('.')[0]}-2024-03-0001", "type": event_type}
    if "version" in spec:
        event["version"] = spec["version"]
    event["occurred_at"] = "2024-03-05T10:12:00+08:00"
    if event_type not in enums.PERSONLESS_TYPES:
        event["person_id"] = "p3f2c9d0e1b7a4c5d6e7f8091a2b3c4d5"
    event.update({"town": "锦屏街道", "village": "东门社区" if event_type not in enums.PERSONLESS_TYPES else None,
                  "source": "区残联业务系统"})
    event["payload"] = dict(spec["payload"])
    return event


# ---- from the models ------------------------------------------------------------------------------
def _kind(schema: dict[str, Any]) -> tuple[str, bool, int | None]:
    """(kind, nullable, maximum) of one property's JSON Schema."""
    nullable = False
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = len(options) < len(schema["anyOf"])
        schema = {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
    kind = schema.get("type", "string")
    if kind == "string":
        fmt = schema.get("format")
        kind = {"date": "date", "date-time": "timestamp"}.get(fmt, "string")
        if schema.get("pattern", "").startswith("^[0-9]{4}-(0[1-9]"):
            kind = "month"
    elif kind == "array":
        item, _, _ = _kind(schema.get("items", {}))
        kind = f"list of {item}"
    return kind, nullable, schema.get("maximum")


@cache
def payload_fields(event_type: str) -> tuple[FieldSpec, ...]:
    """The payload fields of ``event_type`` at its latest version (what readers see after upcasting)."""
    versions = SUPPORTED_VERSIONS[event_type]
    schema = _PAYLOADS[(event_type, versions[-1])].model_json_schema()
    required = set(schema.get("required", ()))
    sensitive = set(SENSITIVE_FIELDS.get(event_type, ()))
    fields = []
    for name, prop in schema["properties"].items():
        kind, nullable, maximum = _kind(prop)
        since = next(v for v in versions if name in _PAYLOADS[(event_type, v)].model_fields)
        fields.append(FieldSpec(name, kind, prop.get("description", ""), name in required,
                                nullable=nullable or name not in required, sensitive=name in sensitive,
                                since=since, maximum=maximum))
    return tuple(fields)


def event_types() -> tuple[str, ...]:
    return enums.EVENT_TYPES
