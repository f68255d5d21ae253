"""Pydantic v2 models of the event envelope and every catalogue type (CONTRACT.md §1).

Strict on purpose: no coercion (``"5"`` is not 5, ``1`` is not ``true``), unknown fields are
rejected, dates are real dates.  Every field value is a JSON-native type (dates stay strings), so
a validated event dumps to exactly the canonical dict the rest of the platform passes around.
Each field's ``description`` completes the sentence "must be ..." used in rejection reasons.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from schemas import enums
from schemas.idnumber import id_number_problem, normalise_id_number
from schemas.text import has_lone_surrogate

STRICT = ConfigDict(strict=True, extra="forbid")

# ---- value types --------------------------------------------------------------------------------
_TS_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9Xx]")


_FRACTION = re.compile(r"\.([0-9]{7,})")


def parse_timestamp(value: str) -> datetime:
    """Parse an (already pattern-checked) RFC 3339 timestamp; raises ValueError if not real."""
    text = value.replace("t", "T").replace("z", "Z").replace(" ", "T", 1)
    if "." in text:  # Python keeps microseconds; nanoseconds are truncated for parsing only
        text = _FRACTION.sub(lambda m: "." + m.group(1)[:6], text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without offset")
    return parsed


def _real_timestamp(value: str) -> str:
    try:
        parse_timestamp(value)
    except ValueError:
        raise PydanticCustomError("bad_timestamp", "not a real date/time") from None
    return value


def _real_date(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("bad_date", "not a real date") from None
    return value


def _valid_id_number(value: str) -> str:
    normalised = normalise_id_number(value)
    problem = id_number_problem(normalised)  # never contains the value itself
    if problem:
        raise PydanticCustomError("bad_id_number", problem)
    return normalised


def _not_an_id_number(value: str) -> str:
    if _ID_SHAPE.fullmatch(value.strip()):
        raise PydanticCustomError(
            "raw_id_number", "looks like a raw national ID number: send it as id_number instead"
        )
    return value


def _no_lone_surrogate(value: str) -> str:
    """Fields without a pattern would take ``"\\ud800"``, which no UTF-8 writer can write."""
    if not value.isascii() and has_lone_surrogate(value):
        raise PydanticCustomError("lone_surrogate", "contains a lone UTF-16 surrogate escape, which is not a character")
    return value


def _text(max_length: int, what: str = "a non-blank string") -> Any:
    return Field(min_length=1, max_length=max_length, pattern=r"\S",
                 description=f"{what} of at most {max_length} characters")


EventId = Annotated[str, Field(min_length=1, max_length=64, description="a string of 1-64 characters"),
                    AfterValidator(_no_lone_surrogate)]
Timestamp = Annotated[
    str,
    Field(pattern=_TS_PATTERN, json_schema_extra={"format": "date-time"},
          description="an RFC 3339 timestamp with offset, e.g. 2024-03-05T10:12:00+08:00"),
    AfterValidator(_real_timestamp),
]
DateStr = Annotated[
    str,
    Field(pattern=_DATE_PATTERN, json_schema_extra={"format": "date"}, description="a real date YYYY-MM-DD"),
    AfterValidator(_real_date),
]
Period = Annotated[str, Field(pattern=_PERIOD_PATTERN, description="a month YYYY-MM")]
PersonId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"\S", description="a non-blank string of at most 128 characters"),
    AfterValidator(_not_an_id_number),
]
IdNumber = Annotated[
    str,
    Field(min_length=18, max_length=24,
          description="an 18-character national ID number (17 digits + digit or X, valid check digit)"),
    AfterValidator(_valid_id_number),
]
Town = Annotated[str, _text(100)]
Village = Annotated[str, _text(100)]
Source = Annotated[str, _text(200)]
ShortText = Annotated[str, _text(200)]
PersonName = Annotated[str, _text(64, "a person's name: a non-blank string")]
Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 -]{4,22}[0-9]$",
                             description="a phone number: digits, optionally +, blanks or dashes (6-24 characters)")]
NeedId = Annotated[str, _text(64)]


def _choice(values: tuple[Any, ...]) -> str:
    return "one of: " + ", ".join(str(v) for v in values)


Category = Annotated[Literal[enums.CATEGORIES], Field(description=_choice(enums.CATEGORIES))]
Grade = Annotated[int, Field(ge=1, le=4, description="an integer 1..4 (1 is most severe)")]
Hardship = Annotated[bool, Field(description="a JSON boolean (true or false)")]
Status = Annotated[Literal[enums.STATUSES], Field(description=_choice(enums.STATUSES))]
VisitKind = Annotated[Literal[enums.VISIT_KINDS], Field(description=_choice(enums.VISIT_KINDS))]
Hazard = Annotated[Literal[enums.HAZARDS], Field(description=_choice(enums.HAZARDS))]
Program = Annotated[Literal[enums.PROGRAMS], Field(description=_choice(enums.PROGRAMS))]
Need = Annotated[Literal[enums.NEEDS], Field(description=_choice(enums.NEEDS))]
Service = Annotated[Literal[enums.SERVICES], Field(description=_choice(enums.SERVICES))]
PlacementKind = Annotated[Literal[enums.PLACEMENT_KINDS], Field(description=_choice(enums.PLACEMENT_KINDS))]

MAX_AMOUNT_FEN = 10**12  # 10 billion yuan: far above any real payment, far below int64 overflow


# ---- payloads -----------------------------------------------------------------------------------
class Payload(BaseModel):
    model_config = STRICT


class PersonRegisteredV1(Payload):
    """``name`` and ``phone`` are optional (who the person is, for their caseworker); like every
    optional field they stay absent from the canonical dict when not given."""

    category: Category
    grade: Grade
    birth_date: DateStr
    hardship: Hardship
    certificate_expires: DateStr
    name: PersonName = None  # type: ignore[assignment]
    phone: Phone = None  # type: ignore[assignment]

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set or k not in ("name", "phone")}


class PersonProfileChangedV1(Payload):
    """Any non-empty subset.  Defaults are never validated, so an explicit ``null`` is rejected
    while an absent field stays absent in the canonical dict."""

    category: Category = None  # type: ignore[assignment]
    grade: Grade = None  # type: ignore[assignment]
    hardship: Hardship = None  # type: ignore[assignment]
    certificate_expires: DateStr = None  # type: ignore[assignment]
    name: PersonName = None  # type: ignore[assignment]
    phone: Phone = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _non_empty(self) -> PersonProfileChangedV1:
        if not self.model_fields_set:
            raise PydanticCustomError(
                "empty_change", "must change at least one of category, grade, hardship, certificate_expires, "
                "name, phone"
            )
        return self

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}


class PersonStatusChangedV1(Payload):
    status: Status
    effective_date: DateStr


class VisitCompletedV1(Payload):
    visit_kind: VisitKind
    visitor: ShortText
    hazards: list[Hazard] = Field(max_length=len(enums.HAZARDS) * 4,
                                  description="a list (may be empty) of hazards, each " + _choice(enums.HAZARDS))


class VisitCompletedV2(VisitCompletedV1):
    duration_minutes: Annotated[int, Field(ge=0, le=1440)] | None = Field(
        default=None, description="an integer 0..1440 (minutes) or null"
    )


class PaymentDisbursedV1(Payload):
    program: Program
    amount_fen: int = Field(gt=0, le=MAX_AMOUNT_FEN, description="an integer > 0 (fen; 1 yuan = 100 fen)")
    period: Period


class PaymentReversedV1(Payload):
    reverses: EventId
    reason: ShortText


# ---- sealed forms (on the log only: the producer moved the sensitive fields into ``sealed``) ----
class PersonRegisteredSealedV1(Payload):
    certificate_expires: DateStr


class PersonProfileChangedSealedV1(Payload):
    """The sealed box holds the changed sensitive fields; ``certificate_expires`` may stay plain."""

    certificate_expires: DateStr = None  # type: ignore[assignment]

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}


class VisitCompletedSealedV1(Payload):
    visit_kind: VisitKind
    visitor: ShortText


class VisitCompletedSealedV2(VisitCompletedSealedV1):
    duration_minutes: Annotated[int, Field(ge=0, le=1440)] | None = Field(
        default=None, description="an integer 0..1440 (minutes) or null"
    )


_B64 = r"^[A-Za-z0-9+/]+={0,2}$"


class SealedBox(BaseModel):
    """``{"v":1,"alg":"AES-256-GCM","kid":...,"nonce":b64,"ct":b64}``: the JSON of the event's
    sensitive payload fields, encrypted under the person's data key (docs/privacy.md)."""

    model_config = STRICT
    v: int = Field(ge=1, le=1, description="the integer 1")
    alg: Literal["AES-256-GCM"] = Field(description="AES-256-GCM")
    kid: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="a key id")
    nonce: str = Field(min_length=16, max_length=16, pattern=_B64, description="a base64 12-byte nonce")
    ct: str = Field(min_length=4, max_length=64 * 1024, pattern=_B64, description="base64 ciphertext")


class NeedRegisteredV1(Payload):
    need_id: NeedId
    need: Need


class ServiceDeliveredV1(Payload):
    service: Service
    need_id: NeedId | None = None


class JobPlacedV1(Payload):
    employer: ShortText
    placement_kind: PlacementKind
    need_id: NeedId | None = None


class JobPostedV1(Payload):
    employer: ShortText
    positions: int = Field(ge=1, le=1_000_000, description="an integer >= 1")


class AlertHandledV1(Payload):
    """An alert assigned, acknowledged or resolved by a caseworker or admin (``by`` = API token name);
    ``assignee`` (who is to act) only with ``assign``."""

    alert_id: EventId
    action: Annotated[Literal[enums.ALERT_ACTIONS], Field(description=_choice(enums.ALERT_ACTIONS))]
    by: ShortText
    note: Annotated[str, AfterValidator(_no_lone_surrogate)] | None = Field(
        default=None, max_length=2000, description="a string of at most 2000 characters or null")
    assignee: ShortText = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _assignee_with_assign(self) -> AlertHandledV1:
        if (self.action == "assign") != ("assignee" in self.model_fields_set):
            raise PydanticCustomError("assignee", "assignee: required with action assign, and only with it")
        return self

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k != "assignee" or "assignee" in self.model_fields_set}


class WarningSnoozedV1(Payload):
    """A need warning put aside until a date, with a reason (``by`` = API token name); it comes back
    on that date unless the event that fulfils it arrives first."""

    warning_id: EventId
    until: DateStr
    reason: ShortText
    by: ShortText


# ---- envelopes ----------------------------------------------------------------------------------
def person_rule_reasons(event_type: str, person_id: Any, id_number: Any) -> list[str]:
    """The cross-field rule on person_id / id_number, shared by the models and validate_event."""
    if event_type in enums.PERSONLESS_TYPES:
        reasons = []
        if person_id is not None:
            reasons.append(f"person_id: must be absent or null for {event_type}")
        if id_number is not None:
            reasons.append(f"id_number: must be absent for {event_type}")
        return reasons
    if person_id is None and id_number is None:
        return ["person_id: required (or id_number)"]
    if person_id is not None and id_number is not None:
        return ["id_number: give either person_id or id_number, not both"]
    return []


class Envelope(BaseModel):
    """Common envelope; the per-type subclasses pin ``type``, ``version`` and ``payload``."""

    model_config = STRICT
    EVENT_TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    event_id: EventId
    type: str = Field(description=_choice(enums.EVENT_TYPES))
    version: int = Field(default=1, ge=1, description="an integer >= 1 (payload schema version)")
    occurred_at: Timestamp
    person_id: PersonId | None = Field(default=None, description="a pseudonymous person key or null")
    id_number: IdNumber | None = Field(
        default=None, description="an 18-character national ID number (replaced by person_id by the producer)"
    )
    town: Town
    village: Village | None = Field(default=None, description="a non-blank string or null")
    source: Source | None = Field(default=None, description="a non-blank string or null")
    payload: dict[str, Any] = Field(description="an object")

    @model_validator(mode="after")
    def _person_rule(self) -> Envelope:
        reasons = person_rule_reasons(self.type, self.person_id, self.id_number)
        if reasons:
            raise PydanticCustomError("person_rule", reasons[0])
        return self


def _event_model(event_type: str, version: int, payload: type[Payload], sealed: bool = False) -> type[Envelope]:
    name = "".join(part.title() for part in re.split(r"[._]", event_type)) + f"V{version}{'Sealed' if sealed else ''}Event"
    annotations: dict[str, Any] = {
        "type": Literal[event_type],
        "version": int,
        "payload": payload,
    }
    if sealed:
        annotations["sealed"] = SealedBox
    namespace: dict[str, Any] = {
        "__annotations__": annotations,
        "__module__": __name__,
        "__doc__": f"``{event_type}`` version {version}.",
        "EVENT_TYPE": event_type,
        "VERSION": version,
        "type": Field(description=f"the event type {event_type}"),
        # Literal[1] would accept true and 1.0: a strict int pinned by bounds does not.
        "version": Field(ge=version, le=version, json_schema_extra={"const": version},
                         description=f"the integer {version}", **({"default": 1} if version == 1 else {})),
        "payload": Field(description="an object"),
    }
    if sealed:
        namespace["sealed"] = Field(description="a sealed box (written by the producer only)")
    return type(name, (Envelope,), namespace)


_PAYLOADS: dict[tuple[str, int], type[Payload]] = {
    ("person.registered", 1): PersonRegisteredV1,
    ("person.profile_changed", 1): PersonProfileChangedV1,
    ("person.status_changed", 1): PersonStatusChangedV1,
    ("visit.completed", 1): VisitCompletedV1,
    ("visit.completed", 2): VisitCompletedV2,
    ("payment.disbursed", 1): PaymentDisbursedV1,
    ("payment.reversed", 1): PaymentReversedV1,
    ("need.registered", 1): NeedRegisteredV1,
    ("service.delivered", 1): ServiceDeliveredV1,
    ("job.placed", 1): JobPlacedV1,
    ("job.posted", 1): JobPostedV1,
    ("alert.handled", 1): AlertHandledV1,
    ("warning.snoozed", 1): WarningSnoozedV1,
}

#: (type, version) -> envelope model of that exact version.
EVENT_MODELS: dict[tuple[str, int], type[Envelope]] = {
    key: _event_model(key[0], key[1], payload) for key, payload in _PAYLOADS.items()
}
#: (type, version) -> envelope model of the sealed form on the log (``sealed`` instead of the
#: sensitive payload fields of schemas/privacy.py).  Never accepted from users.
SEALED_EVENT_MODELS: dict[tuple[str, int], type[Envelope]] = {
    key: _event_model(key[0], key[1], payload, sealed=True)
    for key, payload in {
        ("person.registered", 1): PersonRegisteredSealedV1,
        ("person.profile_changed", 1): PersonProfileChangedSealedV1,
        ("visit.completed", 1): VisitCompletedSealedV1,
        ("visit.completed", 2): VisitCompletedSealedV2,
    }.items()
}
#: type -> supported versions, ascending.
SUPPORTED_VERSIONS: dict[str, tuple[int, ...]] = {
    t: tuple(sorted(v for (tt, v) in EVENT_MODELS if tt == t)) for t in enums.EVENT_TYPES
}
#: type -> the version everything is upcast to.
LATEST_VERSIONS: dict[str, int] = {t: versions[-1] for t, versions in SUPPORTED_VERSIONS.items()}
