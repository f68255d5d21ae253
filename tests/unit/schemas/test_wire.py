"""The read path's typed decoder (schemas/wire.py) says what the full validator says.

Invariant: whatever ``fast_decode`` accepts, ``decode_consumed`` (the pydantic models) accepts too
and returns an equal dict; whatever it does not vouch for goes to ``decode_consumed``, so a
malformed record still becomes poison with a reason naming the field.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.simulate.generator import SimConfig, generate
from schemas.enums import EVENT_TYPES
from schemas.jsontext import dumps_bytes
from schemas.validation import PoisonRecord, decode_consumed
from schemas.wire import NotFast, decode_event, fast_decode
from tests.unit.schemas.examples import event

EXAMPLES = [event(t) for t in EVENT_TYPES if t != "job.posted"] + [event("job.posted")]
SIMULATED = list(itertools.islice(generate(SimConfig(persons=400, seed=9)), 3000))


def wire(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize("obj", EXAMPLES + SIMULATED[::7], ids=lambda e: e.get("type", "?"))
def test_valid_events_decode_to_the_validators_dict(obj: dict[str, Any]) -> None:
    raw = wire(obj)
    assert fast_decode(raw) == decode_consumed(raw)


@pytest.mark.parametrize("obj", [
    event("alert.handled", payload={"alert_id": "A1", "action": "assign", "by": "admin", "assignee": "cw-2"}),
    event("service.delivered", payload={"service": "assistive_device_fitting"}),
    event("visit.completed", 2, payload={"visit_kind": "assessment", "visitor": "李", "hazards": []}),
], ids=["note", "need_id", "duration_minutes"])
def test_a_field_the_models_default_to_null_is_there_in_its_place(obj: dict[str, Any]) -> None:
    raw = wire(obj)
    assert dumps_bytes(fast_decode(raw)) == dumps_bytes(decode_consumed(raw))  # equal, keys in the same order


def test_names_and_phones_too() -> None:
    obj = event("person.registered")
    obj["payload"].update(name="李明", phone="13800001234")
    assert fast_decode(wire(obj))["payload"]["name"] == "李明" == decode_consumed(wire(obj))["payload"]["name"]


@pytest.mark.parametrize("mutate, field", [
    (lambda e: e["payload"].update(amount_fen=-5), "payload.amount_fen"),
    (lambda e: e.update(occurred_at="2024-02-30T10:00:00+08:00"), "occurred_at"),
    (lambda e: e.update(town="   "), "town"),
    (lambda e: e.update(person_id="110101199003071233"), "person_id"),
    (lambda e: e["payload"].update(program="lottery"), "payload.program"),
    (lambda e: e.update(version=7), "version"),
])
def test_what_it_refuses_is_poison_with_the_validators_reason(mutate: Any, field: str) -> None:
    obj = copy.deepcopy(event("payment.disbursed"))
    mutate(obj)
    with pytest.raises(NotFast):
        fast_decode(wire(obj))
    with pytest.raises(PoisonRecord, match=field.replace(".", r"\.")):
        decode_event(wire(obj))


values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**13), st.text(max_size=20),
                   st.sampled_from(["", " ", "2024-02-29", "2023-02-29", "2024-03-05T10:12:00+08:00",
                                    "2024-03-05T10:12:60+08:00", "p1", "living_subsidy", "home_visit", "\t"]))


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(base=st.sampled_from(EXAMPLES), where=st.sampled_from(["envelope", "payload"]),
       key=st.text(min_size=1, max_size=12) | st.sampled_from(
           ["event_id", "type", "version", "occurred_at", "person_id", "town", "village", "amount_fen", "period",
            "hazards", "name", "phone", "need_id", "visitor", "grade", "status"]),
       value=values, drop=st.booleans())
def test_never_accepts_what_the_validator_refuses(base: dict[str, Any], where: str, key: str, value: Any,
                                                 drop: bool) -> None:
    obj = copy.deepcopy(base)
    target = obj if where == "envelope" else obj["payload"]
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    raw = wire(obj)
    try:
        fast = fast_decode(raw)
    except NotFast:
        return
    assert fast == decode_consumed(raw)
