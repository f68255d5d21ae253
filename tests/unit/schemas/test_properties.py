"""Property tests: no JSON input crashes validation, and every verdict is well formed."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Accepted, PoisonRecord, Rejected, decode_consumed, validate_event
from schemas.enums import EVENT_TYPES
from tests.unit.schemas.examples import PAYLOADS, event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=30,
)
FIELDS = ["event_id", "type", "version", "occurred_at", "person_id", "id_number", "town", "village", "source",
          "payload"]


def check(obj: object) -> None:
    result = validate_event(obj)
    assert isinstance(result, Accepted | Rejected)
    if isinstance(result, Rejected):
        assert result.reasons and all(isinstance(r, str) and r for r in result.reasons)
    else:
        json.dumps(result.event)


@given(json_values)
def test_arbitrary_json_never_crashes(obj: object) -> None:
    check(obj)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PAYLOADS)), st.sampled_from(FIELDS + ["payload.*"]), json_values)
def test_one_field_replaced_by_anything(key: tuple[str, int], field: str, value: object) -> None:
    obj = event(*key)
    if field == "payload.*":
        target = obj["payload"]
        name = next(iter(target))
        target[name] = value
    else:
        obj[field] = value
    check(obj)


@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=10),
       st.sampled_from(EVENT_TYPES))
def test_envelope_shaped_garbage(obj: dict, event_type: str) -> None:
    obj.setdefault("type", event_type)
    check(obj)


@given(st.binary(max_size=200))
def test_decode_consumed_only_raises_poison(raw: bytes) -> None:
    try:
        decode_consumed(raw)
    except PoisonRecord as exc:
        assert exc.reason
