"""The fast public validation API everybody calls (producers, processors, the HTTP ingest).

- ``validate_event(obj)`` -> ``Accepted(event)`` with the canonical dict, or ``Rejected(reasons)``
  where each reason starts with the field path ("payload.amount_fen: must be ...").
- ``parse_json_line(text)`` -> the decoded JSON value, or ``InvalidJson``.
- ``decode_consumed(raw)`` -> the canonical, upcast event of a Kafka message, or ``PoisonRecord``.
- ``event_date(event)`` / ``partition_key(event)``: the two derived values the contract defines.

Reasons never quote input values, and anything shaped like a national ID number is masked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from schemas import enums
from schemas.idnumber import mask_ids
from schemas.models import (
    EVENT_MODELS,
    SEALED_EVENT_MODELS,
    SUPPORTED_VERSIONS,
    Envelope,
    parse_timestamp,
    person_rule_reasons,
)
from schemas.text import printable, surrogate_problems
from schemas.upcasters import upcast

Event = dict[str, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
ENVELOPE_KEYS: tuple[str, ...] = (
    "event_id", "type", "version", "occurred_at", "person_id", "town", "village", "source", "payload",
)


@dataclass(slots=True)
class Accepted:
    event: Event
    ok: bool = field(default=True, init=False)


@dataclass(slots=True)
class Rejected:
    reasons: list[str]
    ok: bool = field(default=False, init=False)


class InvalidJson(ValueError):
    """A line that is not one JSON value; the message gives the column, never the content."""


class PoisonRecord(ValueError):
    """A consumed message that is not a valid event; ``reason`` is safe to log and dead-letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---- JSON ----------------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"invalid JSON: {name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"invalid JSON: duplicate key {_key_text(key)}")
            seen.add(key)
    return obj


def parse_json_line(text: str) -> object:
    """Decode one JSON Lines line.  Rejects NaN/Infinity and duplicate keys (ambiguous input)."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"invalid JSON at column {exc.colno}: {exc.msg}") from None
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        raise InvalidJson(f"invalid JSON: {str(exc).split(';')[0][:120]}") from None


# ---- reasons ---------------------------------------------------------------------------------------
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


def _key_text(key: object) -> str:
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return key
    text = key if isinstance(key, str) else repr(key)
    if len(text) > 40:
        text = text[:40] + "..."
    return mask_ids(printable(json.dumps(text, ensure_ascii=False)))


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = _key_text(part)
            out += ("." if out else "") + key
    return out or "event"


@cache
def _expectations(model: type[BaseModel]) -> dict[str, str]:
    """field path -> "must be ..." completion, from the field descriptions."""
    found: dict[str, str] = {}

    def walk(m: type[BaseModel], prefix: str) -> None:
        for name, info in m.model_fields.items():
            path = f"{prefix}{name}"
            if info.description:
                found[path] = info.description
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, path + ".")

    walk(model, "")
    return found


_SELF_DESCRIBED = {"raw_id_number", "bad_id_number", "empty_change", "lone_surrogate"}


def _reasons(exc: ValidationError, model: type[BaseModel], skip: frozenset[str] = frozenset()) -> list[str]:
    expect = _expectations(model)
    reasons: list[str] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(err["loc"])
        if loc and loc[0] in skip:
            continue
        path = _path(loc)
        kind = err["type"]
        if kind == "person_rule":
            reason = err["msg"]
        elif kind in _SELF_DESCRIBED:
            reason = f"{path}: {err['msg']}"
        elif kind == "missing":
            reason = f"{path}: required"
        elif kind == "extra_forbidden":
            reason = f"{path}: unknown field"
        else:
            plain = ".".join(str(p) for p in loc if not isinstance(p, int))
            described = expect.get(plain)
            reason = f"{path}: must be {described}" if described else f"{path}: {err['msg']}"
        reason = mask_ids(reason)
        if reason not in reasons:
            reasons.append(reason)
    return reasons


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


# ---- validation ------------------------------------------------------------------------------------
def _canonical(model: Envelope) -> Event:
    event = model.model_dump()
    if event["id_number"] is None:
        del event["id_number"]
    return event


def validate_event(obj: object, *, sealed_ok: bool = False) -> Accepted | Rejected:
    """Validate one decoded JSON value; never raises for any JSON input.

    ``sealed_ok``: accept the producer's sealed form (``sealed`` instead of the sensitive payload
    fields, docs/privacy.md); only for events read back from the log, never for user input."""
    result = _validate(obj, sealed_ok)
    if isinstance(result, Rejected):
        return _explain_surrogates(obj, result)
    return result


def _explain_surrogates(obj: object, rejected: Rejected) -> Rejected:
    """A string holding a lone surrogate (``"\\ud800"`` in JSON) fails its field's pattern with a
    puzzling reason ("must be a non-blank string"): say what is really wrong instead."""
    problems = surrogate_problems(obj)
    if not problems:
        return rejected
    paths = {_path(loc): problem for loc, problem in problems}
    reasons = [f"{path}: {problem}" for path, problem in paths.items()]
    reasons += [r for r in rejected.reasons if r.split(":", 1)[0] not in paths]
    return Rejected(reasons)


def _validate(obj: object, sealed_ok: bool) -> Accepted | Rejected:
    if not isinstance(obj, dict):
        return Rejected([f"event: must be a JSON object, got {_json_type(obj)}"])
    event_type = obj.get("type")
    version = obj.get("version", 1)
    head: list[str] = []
    if event_type is None:
        head.append("type: required")
    elif not isinstance(event_type, str) or event_type not in SUPPORTED_VERSIONS:
        head.append("type: must be one of: " + ", ".join(enums.EVENT_TYPES))
    if type(version) is not int or version < 1:
        head.append("version: must be an integer >= 1")
    elif not head and version not in SUPPORTED_VERSIONS[event_type]:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS[event_type]))
        head.append(f"version: {event_type} has no version {version} (supported: {supported})")
    if head:
        # Still report what is wrong with the rest of the envelope, in one pass.
        try:
            Envelope.model_validate(obj)
        except ValidationError as exc:
            head += [r for r in _reasons(exc, Envelope, frozenset({"type", "version"})) if r not in head]
        return Rejected(head)
    model = EVENT_MODELS[(event_type, version)]
    if "sealed" in obj:
        sealed_model = SEALED_EVENT_MODELS.get((event_type, version))
        if not sealed_ok:
            return Rejected(["sealed: events are sealed by the producer; send the plain fields"])
        if sealed_model is None:
            return Rejected([f"sealed: {event_type} has no sealed fields"])
        model = sealed_model
    try:
        validated = model.model_validate(obj)
    except ValidationError as exc:
        reasons = _reasons(exc, model)
        for extra in person_rule_reasons(event_type, obj.get("person_id"), obj.get("id_number")):
            if extra not in reasons and not any(r.startswith(extra.split(":")[0] + ":") for r in reasons):
                reasons.append(extra)
        return Rejected(reasons or ["event: invalid"])
    return Accepted(_canonical(validated))


# ---- consumed records --------------------------------------------------------------------------------
_TYPE_FIELD = re.compile(rb'"type":"([a-z._]{1,40})"')
_VERSION_FIELD = re.compile(rb'"version":([0-9]{1,3})[,}]')


def _fast_decode(raw: bytes) -> Event | None:
    """Canonical compact JSON as our producers write it: one Rust-side parse+validate pass.

    Safe because the chosen model pins ``type`` and ``version`` itself: a wrong guess just fails
    and the slow path produces the reason."""
    found = _TYPE_FIELD.search(raw)
    if found is None:
        return None
    version_found = _VERSION_FIELD.search(raw)
    version = int(version_found.group(1)) if version_found else 1
    models = SEALED_EVENT_MODELS if b'"sealed":' in raw else EVENT_MODELS
    model = models.get((found.group(1).decode(), version))
    if model is None:
        return None
    try:
        return _canonical(model.model_validate_json(raw))
    except ValidationError:
        return None


def decode_consumed(raw: bytes | bytearray | memoryview | str) -> Event:
    """Parse, validate and upcast a message value read from the events topic.

    Raises ``PoisonRecord`` for anything that is not a valid event, including one still carrying
    a raw ``id_number`` (only pseudonymised events may be on Kafka).  A sealed event comes back
    with ``sealed`` kept and its sensitive fields absent: ``processors.privacy.unseal_batch``
    restores them (or erases them for a forgotten person)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    elif not isinstance(raw, bytes):
        raw = bytes(raw)
    event = _fast_decode(raw)
    if event is None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PoisonRecord(f"invalid UTF-8 at byte {exc.start}") from None
        try:
            result = validate_event(parse_json_line(text), sealed_ok=True)
        except InvalidJson as exc:
            raise PoisonRecord(str(exc)) from None
        if isinstance(result, Rejected):
            raise PoisonRecord("; ".join(result.reasons))
        event = result.event
    if "id_number" in event:
        raise PoisonRecord("id_number: raw ID numbers must not be on the events topic")
    return upcast(event)


# ---- derived values ------------------------------------------------------------------------------------
def event_date(event: Event) -> str:
    """The event's date: calendar date of ``occurred_at`` in Asia/Shanghai (YYYY-MM-DD)."""
    ts: str = event["occurred_at"]
    # Fast path: +08:00 is Shanghai local time for every date since 1992 (no DST after 1991).
    if ts.endswith("+08:00") and ts[:4] >= "1992":
        return ts[:10]
    parsed: datetime = parse_timestamp(ts)
    return parsed.astimezone(SHANGHAI).date().isoformat()


def partition_key(event: Event) -> str:
    """The Kafka key: ``person_id``, or ``payload.employer`` for ``job.posted``."""
    if event["type"] in enums.PERSONLESS_TYPES:
        return event["payload"]["employer"]
    person_id = event.get("person_id")
    if not person_id:
        raise ValueError("partition_key: event has no person_id (pseudonymise id_number first)")
    return person_id
