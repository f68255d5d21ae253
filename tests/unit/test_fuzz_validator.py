"""Property-based fuzzing of the validation API (hypothesis): ``validate_event``,
``parse_json_line`` and ``decode_consumed`` never raise anything but their documented errors,
every rejection carries reasons that name a field, and no reason quotes a national ID number.

The number of examples each property ran is recorded in the reliability report.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.publisher import encode
from schemas.validation import (
    Accepted,
    InvalidJson,
    PoisonRecord,
    Rejected,
    decode_consumed,
    parse_json_line,
    validate_event,
)
from tests.support.reliability import record

ID_NUMBER = "110101199003071233"
EXAMPLES = 400
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

VALID: list[dict[str, Any]] = [
    {"event_id": "e-reg", "type": "person.registered", "occurred_at": "2024-03-05T10:12:00+08:00",
     "person_id": "p1", "town": "锦屏街道", "village": "东村",
     "payload": {"category": "physical", "grade": 2, "birth_date": "1980-01-02", "hardship": True,
                 "certificate_expires": "2030-01-01"}},
    {"event_id": "e-pay", "type": "payment.disbursed", "occurred_at": "2024-03-05T10:12:00+08:00",
     "person_id": "p1", "town": "锦屏街道", "village": None,
     "payload": {"program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"}},
    {"event_id": "e-visit", "type": "visit.completed", "occurred_at": "2024-03-05T10:12:00Z", "person_id": "p1",
     "town": "锦屏街道", "payload": {"visit_kind": "home_visit", "visitor": "w", "hazards": ["unsafe_housing"]}},
    {"event_id": "e-post", "type": "job.posted", "occurred_at": "2024-03-05T10:12:00+08:00", "person_id": None,
     "town": "锦屏街道", "payload": {"employer": "某公司", "positions": 2}},
    {"event_id": "e-status", "type": "person.status_changed", "version": 1,
     "occurred_at": "2024-03-05T10:12:00+08:00", "person_id": "p1", "town": "锦屏街道",
     "payload": {"status": "deceased", "effective_date": "2024-03-01"}},
    {"event_id": "e-id", "type": "need.registered", "occurred_at": "2024-03-05T10:12:00+08:00",
     "id_number": ID_NUMBER, "town": "锦屏街道", "payload": {"need_id": "n1", "need": "care"}},
]

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
           | st.sampled_from(["", "2024-02-30", "2024-13-01", "2024-03-05T25:00:00+08:00", "9999-12-31",
                              ID_NUMBER, "11010519491231002X", "=cmd|' /C calc'!A0", "\u0000", "\ud7ff",
                              "payment.disbursed", "living_subsidy", "-1", "1e309"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=15)


def _check_reasons(result: Accepted | Rejected) -> None:
    if isinstance(result, Rejected):
        assert result.reasons, "a rejection without a reason"
        for reason in result.reasons:
            assert isinstance(reason, str) and ":" in reason and reason.split(":", 1)[1].strip(), reason
            assert ID_NUMBER not in reason and "11010519491231002X" not in reason, reason


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    event = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        target = event if draw(st.booleans()) or not isinstance(event.get("payload"), dict) else event["payload"]
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        keys = sorted(target)
        if action == "drop" and keys:
            target.pop(draw(st.sampled_from(keys)))
        elif action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(json_values)
        else:
            target[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    return event


def test_validate_event_on_arbitrary_json_never_raises() -> None:
    seen = {"examples": 0, "rejected": 0}

    @FAST
    @given(json_values)
    def check(value: Any) -> None:
        seen["examples"] += 1
        result = validate_event(value)
        seen["rejected"] += not result.ok
        _check_reasons(result)

    check()
    record("fuzz", "validate_event: arbitrary JSON values", claim="{examples} examples, {rejected} rejected, "
           "every rejection with a field and a reason, 0 exceptions", **seen)
    assert seen["examples"] >= EXAMPLES // 2


def test_validate_event_on_mutated_valid_events() -> None:
    seen = {"examples": 0, "rejected": 0, "accepted": 0}

    @FAST
    @given(mutated_events())
    def check(event: dict[str, Any]) -> None:
        seen["examples"] += 1
        result = validate_event(event)
        _check_reasons(result)
        if isinstance(result, Accepted):
            seen["accepted"] += 1
            again = validate_event(result.event)  # canonical form is stable and valid
            assert isinstance(again, Accepted) and again.event == result.event
            if "id_number" not in result.event:
                assert decode_consumed(encode(result.event))["event_id"] == result.event["event_id"]
        else:
            seen["rejected"] += 1

    check()
    record("fuzz", "validate_event: valid events with fields dropped, replaced or added",
           claim="{examples} examples ({accepted} still valid, {rejected} rejected with reasons), 0 exceptions",
           **seen)
    assert seen["rejected"] > 0


def test_parse_json_line_on_arbitrary_text() -> None:
    seen = {"examples": 0, "invalid": 0}

    @FAST
    @given(st.text(max_size=200) | json_values.map(json.dumps)
           | st.integers(min_value=1, max_value=20_000).map(lambda n: "[" * n + "]" * n)
           | st.integers(min_value=1, max_value=20_000).map(lambda n: '{"a":' * n + "1" + "}" * n))
    def check(text: str) -> None:
        seen["examples"] += 1
        try:
            parse_json_line(text)
        except InvalidJson as exc:
            seen["invalid"] += 1
            assert str(exc).startswith("invalid JSON")

    check()
    record("fuzz", "parse_json_line: arbitrary text, deep nesting up to 20k levels",
           claim="{examples} examples, {invalid} rejected as invalid JSON with a reason, 0 RecursionErrors", **seen)


def test_decode_consumed_on_arbitrary_bytes() -> None:
    seen = {"examples": 0, "poison": 0}

    @FAST
    @given(st.binary(max_size=300) | mutated_events().map(encode)
           | mutated_events().map(lambda e: encode(e)[: len(encode(e)) // 2]))
    def check(raw: bytes) -> None:
        seen["examples"] += 1
        try:
            event = decode_consumed(raw)
        except PoisonRecord as exc:
            seen["poison"] += 1
            assert exc.reason and ID_NUMBER not in exc.reason
            return
        assert "id_number" not in event and event["event_id"]

    check()
    record("fuzz", "decode_consumed: arbitrary bytes and truncated/mutated wire events",
           claim="{examples} examples, {poison} poison records with a reason, 0 other exceptions", **seen)
