"""Typed msgspec decoders that say what the pydantic models say, fast: the read path's and ingest's.

Why decoders next to the pydantic models: the log holds what a producer already validated, so
every reader (live worker, replay, backfill) paid a full pydantic validation per record for a
safety net (~10 µs); and ``careledger ingest`` paid a duplicate-key-checking stdlib parse plus that
validation (~21 µs) per input line.  These msgspec structs say the same as ``schemas.models`` —
types, enums, lengths, bounds, real dates, the person rule — and decode a consumed record or an
input line (duplicate-key check included) in ~5-7 µs, where the full validations took ~11 and ~22
(one run on simulated events, a loaded 2-core VM).

* :func:`fast_decode`: a Kafka message value → the canonical, upcast event.  A record it refuses
  is handed to ``schemas.validation.decode_consumed``, which either accepts it (this decoder is
  only ever stricter) or raises ``PoisonRecord`` with the reasons naming the field.
* :func:`fast_input`: one ingest line → the canonical event ``validate_event`` would accept (not
  upcast, ``id_number`` still raw).  Whatever it cannot vouch for (a key that may repeat, an
  ``id_number`` the models would normalise, ``sealed``, anything invalid) is :class:`NotFast`: the
  caller runs ``parse_json_line`` and ``validate_event``, which give the reasons.

The invariant the property tests hold (tests/unit/schemas/test_wire.py, test_wire_input.py):
whatever these decoders accept, the full validator accepts too and returns an equal dict (with
keys in the same order).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from schemas import enums
from schemas.idnumber import checksum_char
from schemas.models import parse_timestamp
from schemas.upcasters import upcast
from schemas.validation import PoisonRecord, decode_consumed

Event = dict[str, Any]

# Python's ``$`` also matches before a final newline: ``\Z`` does not.
_TS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"
_PERIOD = r"^[0-9]{4}-(0[1-9]|1[0-2])\Z"
_B64 = r"^[A-Za-z0-9+/]+={0,2}\Z"
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9Xx]")


def _text(n: int) -> Any:
    """A non-blank string of at most ``n`` characters; "non-blank" is checked after decoding
    (:data:`TEXT_FIELDS`), a regex per field in the decoder costs more than the whole parse."""
    return Annotated[str, Meta(min_length=1, max_length=n)]


EventId = Annotated[str, Meta(min_length=1, max_length=64)]
Timestamp = Annotated[str, Meta(min_length=20, max_length=40)]  # shape and reality: _real_timestamp
# shapes of dates and months: checked after decoding (_real_date, _month), cached; a pattern in
# the decoder costs a regex search per value
DateText = Annotated[str, Meta(min_length=10, max_length=10)]
Period = Annotated[str, Meta(min_length=7, max_length=7)]
PersonId = _text(128)
#: only the plain form (the models would normalise blanks, full-width digits or a lower-case x)
IdNumber = Annotated[str, Meta(pattern=r"^[0-9]{17}[0-9X]\Z")]
Text100, Text200, Text64 = _text(100), _text(200), _text(64)
Grade = Annotated[int, Meta(ge=1, le=4)]
Category = Literal[enums.CATEGORIES]  # type: ignore[valid-type]
Status = Literal[enums.STATUSES]  # type: ignore[valid-type]
VisitKind = Literal[enums.VISIT_KINDS]  # type: ignore[valid-type]
Hazard = Literal[enums.HAZARDS]  # type: ignore[valid-type]
Program = Literal[enums.PROGRAMS]  # type: ignore[valid-type]
Need = Literal[enums.NEEDS]  # type: ignore[valid-type]
Service = Literal[enums.SERVICES]  # type: ignore[valid-type]
Placement = Literal[enums.PLACEMENT_KINDS]  # type: ignore[valid-type]
Action = Literal[enums.ALERT_ACTIONS]  # type: ignore[valid-type]

_STRICT: dict[str, Any] = {"forbid_unknown_fields": True}


class SealedBox(Struct, **_STRICT):
    v: Annotated[int, Meta(ge=1, le=1)]
    alg: Literal["AES-256-GCM"]
    kid: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+\Z")]
    nonce: Annotated[str, Meta(min_length=16, max_length=16, pattern=_B64)]
    ct: Annotated[str, Meta(min_length=4, max_length=64 * 1024, pattern=_B64)]


class Envelope(Struct, **_STRICT):
    """Every envelope field; ``payload`` is kept raw and decoded by its type's struct."""

    event_id: EventId
    type: str
    occurred_at: Timestamp
    town: Text100
    payload: msgspec.Raw
    version: int = 1
    person_id: PersonId | None = None
    village: Text100 | None = None
    source: Text200 | None = None
    sealed: SealedBox | UnsetType = UNSET


class InputEnvelope(Struct, **_STRICT):
    """An ingest line's envelope: ``id_number`` may stand in for ``person_id``, ``sealed`` is
    unknown (only the producer seals).  Optional fields are UNSET when absent, so that
    :func:`fast_input` can tell how many keys the line has (:func:`_strings`)."""

    event_id: EventId
    type: str
    occurred_at: Timestamp
    town: Text100
    payload: msgspec.Raw
    version: int | UnsetType = UNSET
    person_id: PersonId | None | UnsetType = UNSET
    id_number: IdNumber | None | UnsetType = UNSET
    village: Text100 | None | UnsetType = UNSET
    source: Text200 | None | UnsetType = UNSET


# ---- payloads (plain and sealed forms, as schemas/models.py) ------------------------------------
Phone = Annotated[str, Meta(pattern=r"^\+?[0-9][0-9 -]{4,22}[0-9]\Z")]


class PersonRegisteredV1(Struct, **_STRICT):
    category: Category
    grade: Grade
    birth_date: DateText
    hardship: bool
    certificate_expires: DateText
    name: Text64 | UnsetType = UNSET
    phone: Phone | UnsetType = UNSET


class PersonRegisteredSealedV1(Struct, **_STRICT):
    certificate_expires: DateText


class PersonProfileChangedV1(Struct, **_STRICT):
    category: Category | UnsetType = UNSET
    grade: Grade | UnsetType = UNSET
    hardship: bool | UnsetType = UNSET
    certificate_expires: DateText | UnsetType = UNSET
    name: Text64 | UnsetType = UNSET
    phone: Phone | UnsetType = UNSET


class PersonProfileChangedSealedV1(Struct, **_STRICT):
    certificate_expires: DateText | UnsetType = UNSET


class PersonStatusChangedV1(Struct, **_STRICT):
    status: Status
    effective_date: DateText


class VisitCompletedV1(Struct, **_STRICT):
    visit_kind: VisitKind
    visitor: Text200
    hazards: Annotated[list[Hazard], Meta(max_length=len(enums.HAZARDS) * 4)]


class VisitCompletedV2(Struct, **_STRICT):
    visit_kind: VisitKind
    visitor: Text200
    hazards: Annotated[list[Hazard], Meta(max_length=len(enums.HAZARDS) * 4)]
    duration_minutes: Annotated[int, Meta(ge=0, le=1440)] | None | UnsetType = UNSET


class VisitCompletedSealedV1(Struct, **_STRICT):
    visit_kind: VisitKind
    visitor: Text200


class VisitCompletedSealedV2(Struct, **_STRICT):
    visit_kind: VisitKind
    visitor: Text200
    duration_minutes: Annotated[int, Meta(ge=0, le=1440)] | None | UnsetType = UNSET


class PaymentDisbursedV1(Struct, **_STRICT):
    program: Program
    amount_fen: Annotated[int, Meta(gt=0, le=10**12)]
    period: Period


class PaymentReversedV1(Struct, **_STRICT):
    reverses: EventId
    reason: Text200


class NeedRegisteredV1(Struct, **_STRICT):
    need_id: Text64
    need: Need


class ServiceDeliveredV1(Struct, **_STRICT):
    service: Service
    need_id: Text64 | None | UnsetType = UNSET


class JobPlacedV1(Struct, **_STRICT):
    employer: Text200
    placement_kind: Placement
    need_id: Text64 | None | UnsetType = UNSET


class JobPostedV1(Struct, **_STRICT):
    employer: Text200
    positions: Annotated[int, Meta(ge=1, le=1_000_000)]


class AlertHandledV1(Struct, **_STRICT):
    alert_id: EventId
    action: Action
    by: Text200
    note: Annotated[str, Meta(max_length=2000)] | None | UnsetType = UNSET
    assignee: Text200 | UnsetType = UNSET


class WarningSnoozedV1(Struct, **_STRICT):
    warning_id: EventId
    until: DateText
    reason: Text200
    by: Text200


#: (type, version, sealed) -> payload struct; one table for both forms.
PAYLOADS: dict[tuple[str, int, bool], type[Struct]] = {
    ("person.registered", 1, False): PersonRegisteredV1,
    ("person.registered", 1, True): PersonRegisteredSealedV1,
    ("person.profile_changed", 1, False): PersonProfileChangedV1,
    ("person.profile_changed", 1, True): PersonProfileChangedSealedV1,
    ("person.status_changed", 1, False): PersonStatusChangedV1,
    ("visit.completed", 1, False): VisitCompletedV1,
    ("visit.completed", 2, False): VisitCompletedV2,
    ("visit.completed", 1, True): VisitCompletedSealedV1,
    ("visit.completed", 2, True): VisitCompletedSealedV2,
    ("payment.disbursed", 1, False): PaymentDisbursedV1,
    ("payment.reversed", 1, False): PaymentReversedV1,
    ("need.registered", 1, False): NeedRegisteredV1,
    ("service.delivered", 1, False): ServiceDeliveredV1,
    ("job.placed", 1, False): JobPlacedV1,
    ("job.posted", 1, False): JobPostedV1,
    ("alert.handled", 1, False): AlertHandledV1,
    ("warning.snoozed", 1, False): WarningSnoozedV1,
}
#: payload fields that must hold a non-whitespace character (the models' ``pattern=r"\S"``)
TEXT_FIELDS: dict[type[Struct], tuple[str, ...]] = {
    PersonRegisteredV1: ("name",), PersonProfileChangedV1: ("name",),
    VisitCompletedV1: ("visitor",), VisitCompletedV2: ("visitor",), VisitCompletedSealedV1: ("visitor",),
    VisitCompletedSealedV2: ("visitor",), PaymentReversedV1: ("reason",), NeedRegisteredV1: ("need_id",),
    ServiceDeliveredV1: ("need_id",), JobPlacedV1: ("employer", "need_id"), JobPostedV1: ("employer",),
    AlertHandledV1: ("by", "assignee"),
    WarningSnoozedV1: ("reason", "by"),
}
#: payload fields the models default to None: UNSET in the struct when absent (so a key count can
#: tell absent from ``null``), None in the canonical dict either way
NULL_DEFAULTS: dict[type[Struct], frozenset[str]] = {
    VisitCompletedV2: frozenset({"duration_minutes"}), VisitCompletedSealedV2: frozenset({"duration_minutes"}),
    ServiceDeliveredV1: frozenset({"need_id"}), JobPlacedV1: frozenset({"need_id"}),
    AlertHandledV1: frozenset({"note"}),
}
#: payload fields that are dates (checked to be real dates after decoding)
DATE_FIELDS: dict[type[Struct], tuple[str, ...]] = {
    PersonRegisteredV1: ("birth_date", "certificate_expires"),
    PersonRegisteredSealedV1: ("certificate_expires",),
    PersonProfileChangedV1: ("certificate_expires",),
    PersonProfileChangedSealedV1: ("certificate_expires",),
    PersonStatusChangedV1: ("effective_date",),
    WarningSnoozedV1: ("until",),
}

_ENVELOPE = msgspec.json.Decoder(Envelope)
_INPUT_ENVELOPE = msgspec.json.Decoder(InputEnvelope)
_PAYLOAD_DECODERS = {key: msgspec.json.Decoder(struct) for key, struct in PAYLOADS.items()}
_to_builtins = msgspec.to_builtins


class NotFast(ValueError):
    """This decoder cannot vouch for the record; the full validator decides."""


_DATE_SHAPE = re.compile(_DATE)
_PERIOD_SHAPE = re.compile(_PERIOD)


@lru_cache(maxsize=1 << 16)
def _real_date(text: str) -> bool:
    if _DATE_SHAPE.match(text) is None:
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1 << 12)
def _month(text: str) -> bool:
    return _PERIOD_SHAPE.match(text) is not None


_TS_SHAPE = re.compile(_TS)


def _real_timestamp(text: str) -> bool:
    if len(text) == 25 and text[10] == "T" and text[19] in "+-" and text[22] == ":" and text[:19].isascii():
        # the form producers write (2024-03-05T10:12:00+08:00): fromisoformat alone is exact here
        try:
            return datetime.fromisoformat(text).tzinfo is not None
        except ValueError:
            return False
    if _TS_SHAPE.match(text) is None:
        return False
    try:
        moment: datetime = parse_timestamp(text)
    except ValueError:
        return False
    return moment.tzinfo is not None


def _blank(value: str | None | UnsetType) -> bool:
    return isinstance(value, str) and not value.strip()


def _payload(event_type: str, version: int, sealed: bool, raw: msgspec.Raw) -> Struct:
    """The payload of that type and version, once it passed every check the payload models make."""
    decoder = _PAYLOAD_DECODERS.get((event_type, version, sealed))
    if decoder is None:
        raise NotFast("type/version")
    try:
        payload: Struct = decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise NotFast(str(exc)) from None
    if type(payload) is PaymentDisbursedV1:  # the one field of type Period
        if not _month(payload.period):
            raise NotFast("period")
    elif type(payload) is PersonProfileChangedV1 and payload == _EMPTY_CHANGE:
        raise NotFast("empty change")
    elif type(payload) is AlertHandledV1 and (payload.action == "assign") == (payload.assignee is UNSET):
        raise NotFast("assignee")
    kind = type(payload)
    for name in DATE_FIELDS.get(kind, ()):
        value = getattr(payload, name)
        if value is not UNSET and not _real_date(value):
            raise NotFast(name)
    for name in TEXT_FIELDS.get(kind, ()):
        if _blank(getattr(payload, name)):
            raise NotFast(name)
    return payload


def _payload_dict(payload: Struct, given: dict[str, Any]) -> dict[str, Any]:
    """The payload as the models dump it, from ``given`` (its fields present, ``to_builtins``): a
    field they default to None is there even when absent, in its place."""
    nullable = NULL_DEFAULTS.get(type(payload))
    if nullable and not nullable.issubset(given):
        return {name: given.get(name) for name in payload.__struct_fields__ if name in given or name in nullable}
    return given


def _check_envelope(env: Envelope | InputEnvelope) -> None:
    if not _real_timestamp(env.occurred_at):
        raise NotFast("occurred_at")
    if _blank(env.town) or _blank(env.village) or _blank(env.source):
        raise NotFast("envelope text")


def _person_ok(event_type: str, person_id: str | None, id_number: str | None) -> bool:
    """The models' person rule: a personless type has neither key, any other exactly one; a
    person_id neither blank nor shaped like an ID number, an id_number with its check digit
    (its form is :data:`IdNumber`'s pattern)."""
    if event_type in enums.PERSONLESS_TYPES:
        return person_id is None and id_number is None
    if id_number is not None:
        return person_id is None and checksum_char(id_number[:17]) == id_number[17]
    return not (person_id is None or _blank(person_id)
                or (len(person_id) >= 18 and _ID_SHAPE.fullmatch(person_id.strip())))


def _event(env: Envelope | InputEnvelope, version: int, person_id: str | None, id_number: str | None,
           payload: dict[str, Any]) -> Event:
    """The canonical dict, keys in the models' order (the wire bytes of an event depend on it)."""
    village = None if env.village is UNSET else env.village
    source = None if env.source is UNSET else env.source
    if id_number is None:
        return {"event_id": env.event_id, "type": env.type, "version": version, "occurred_at": env.occurred_at,
                "person_id": person_id, "town": env.town, "village": village, "source": source,
                "payload": payload}
    return {"event_id": env.event_id, "type": env.type, "version": version, "occurred_at": env.occurred_at,
            "person_id": person_id, "id_number": id_number, "town": env.town, "village": village, "source": source,
            "payload": payload}


def fast_decode(raw: bytes) -> Event:
    """The canonical, upcast event of a message value, or :class:`NotFast` (then ask
    :func:`decode_consumed`)."""
    try:
        env = _ENVELOPE.decode(raw)
    except msgspec.DecodeError as exc:
        raise NotFast(str(exc)) from None
    sealed = env.sealed is not UNSET
    payload = _payload(env.type, env.version, sealed, env.payload)
    _check_envelope(env)
    if not _person_ok(env.type, env.person_id, None):
        raise NotFast("person_id")
    event = _event(env, env.version, env.person_id, None, _payload_dict(payload, _to_builtins(payload)))
    if sealed:
        event["sealed"] = _to_builtins(env.sealed)
    return upcast(event)


#: what an optional envelope text field adds to the strings of the line: key and value, key, nothing
_STRINGS_OF = {str: 2, type(None): 1, UnsetType: 0}


def _envelope_strings(env: InputEnvelope) -> int:
    """How many JSON strings the envelope was decoded from, given no key repeats: ``event_id``,
    ``type``, ``occurred_at`` and ``town`` a key and a value each, ``payload`` and ``version`` a key."""
    return (9 + (env.version is not UNSET) + _STRINGS_OF[type(env.person_id)] + _STRINGS_OF[type(env.id_number)]
            + _STRINGS_OF[type(env.village)] + _STRINGS_OF[type(env.source)])


def _strings(fields: dict[str, Any]) -> int:
    """How many JSON strings a payload's ``fields`` were decoded from, given no key repeats: a key
    each, and a string per string value, in a list too."""
    kinds = list(map(type, fields.values()))
    count = len(fields) + kinds.count(str)
    if list in kinds:
        count += sum(len(value) for value in fields.values() if type(value) is list)
    return count


def fast_input(raw: bytes) -> Event:
    """The canonical event ``validate_event(parse_json_line(raw.decode()))`` accepts (not upcast,
    ``id_number`` still raw), or :class:`NotFast` (then ask them: they give the reasons).

    msgspec keeps the last of repeated keys where ``parse_json_line`` refuses the line, so the
    quotes are counted: every string of the line (key or value) has two, a quote inside a string
    one more (``\\"``); a repeated key leaves its key and any string value out of what was
    decoded.  So as many quotes as twice the strings decoded means no key repeats.  (A string
    holding a quote falls back too.)"""
    try:
        env = _INPUT_ENVELOPE.decode(raw)
    except msgspec.DecodeError as exc:
        raise NotFast(str(exc)) from None
    version = 1 if env.version is UNSET else env.version
    payload = _payload(env.type, version, False, env.payload)
    given = _to_builtins(payload)
    if raw.count(b'"') != 2 * (_envelope_strings(env) + _strings(given)):
        raise NotFast("a key may repeat")
    _check_envelope(env)
    person_id = None if env.person_id is UNSET else env.person_id
    id_number = None if env.id_number is UNSET else env.id_number
    if not _person_ok(env.type, person_id, id_number):
        raise NotFast("person_id/id_number")
    return _event(env, version, person_id, id_number, _payload_dict(payload, given))


_EMPTY_CHANGE = PersonProfileChangedV1()


def decode_event(raw: bytes) -> Event:
    """A message value of the events topic → the canonical, upcast event (sealed fields still
    sealed: ``processors.privacy`` opens them).  Raises ``PoisonRecord`` with the field-naming
    reasons of the full validator for anything that is not a valid event."""
    try:
        return fast_decode(raw)
    except NotFast:
        return decode_consumed(raw)


__all__ = ["NotFast", "PoisonRecord", "decode_event", "fast_decode", "fast_input"]
