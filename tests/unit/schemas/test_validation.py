from __future__ import annotations

import json

import pytest

from schemas import (
    Accepted,
    InvalidJson,
    PoisonRecord,
    Rejected,
    decode_consumed,
    event_date,
    parse_json_line,
    partition_key,
    validate_event,
)
from schemas.enums import EVENT_TYPES
from schemas.models import EVENT_MODELS
from schemas.validation import ENVELOPE_KEYS
from tests.unit.schemas.examples import BAD_PAYLOADS, PAYLOADS, event

VALID_ID = "110101199003071233"


def rejected(obj: object) -> list[str]:
    result = validate_event(obj)
    assert isinstance(result, Rejected), result
    assert result.reasons
    return result.reasons


def test_every_type_has_an_example() -> None:
    assert set(EVENT_MODELS) == set(PAYLOADS)
    assert {t for t, _ in PAYLOADS} == set(EVENT_TYPES)


@pytest.mark.parametrize("key", sorted(PAYLOADS), ids=lambda k: f"{k[0]}-v{k[1]}")
def test_valid_examples_are_accepted_in_canonical_form(key: tuple[str, int]) -> None:
    result = validate_event(event(*key))
    assert isinstance(result, Accepted), result
    canonical = result.event
    assert tuple(canonical) == ENVELOPE_KEYS
    assert canonical["version"] == key[1]
    assert canonical["type"] == key[0]
    for name, value in PAYLOADS[key].items():
        assert canonical["payload"][name] == value


@pytest.mark.parametrize(("event_type", "change", "path"), BAD_PAYLOADS)
def test_bad_payloads_are_rejected_naming_the_field(event_type: str, change: dict, path: str) -> None:
    obj = event(event_type)
    obj["payload"].update(change)
    reasons = rejected(obj)
    assert any(r.startswith(path + ":") for r in reasons), reasons


@pytest.mark.parametrize("field", ["event_id", "type", "occurred_at", "town", "payload"])
def test_required_envelope_fields(field: str) -> None:
    obj = event("payment.disbursed")
    del obj[field]
    assert any(r.startswith(f"{field}:") for r in rejected(obj))


@pytest.mark.parametrize("value", [
    "2024-03-05T10:12:00",  # no offset
    "2024-03-05",
    "2024-02-30T10:12:00+08:00",
    "2024-03-05T25:12:00+08:00",
    "2024-03-05T10:12:00+0800",
    "5 March 2024",
    1709605920,
])
def test_occurred_at_must_be_rfc3339_with_offset(value: object) -> None:
    assert any(r.startswith("occurred_at:") for r in rejected(event("visit.completed", occurred_at=value)))


@pytest.mark.parametrize("value", ["2024-03-05T10:12:00Z", "2024-03-05T10:12:00.123456789-05:30",
                                   "2024-03-05 10:12:00+08:00"])
def test_occurred_at_variants_accepted(value: str) -> None:
    assert isinstance(validate_event(event("visit.completed", occurred_at=value)), Accepted)


def test_version_defaults_to_1_and_unknown_versions_are_rejected() -> None:
    obj = event("payment.disbursed")
    obj.pop("version", None)
    assert validate_event(obj).event["version"] == 1
    assert rejected(event("payment.disbursed", version=2)) == [
        "version: payment.disbursed has no version 2 (supported: 1)"]
    assert any(r.startswith("version:") for r in rejected(event("visit.completed", version=3)))
    for bad in (0, -1, True, "1", 1.0, None):
        assert any(r.startswith("version:") for r in rejected(event("payment.disbursed", version=bad)))


def test_unknown_type_still_reports_other_envelope_problems() -> None:
    reasons = rejected(event("payment.disbursed", type="payment.made", town=""))
    assert reasons[0].startswith("type: must be one of")
    assert any(r.startswith("town:") for r in reasons)


def test_person_id_rules() -> None:
    assert rejected(event("payment.disbursed", person_id=None)) == ["person_id: required (or id_number)"]
    both = event("payment.disbursed", id_number=VALID_ID)
    assert any("not both" in r for r in rejected(both))
    only_id = event("payment.disbursed", person_id=None, id_number=VALID_ID)
    accepted = validate_event(only_id)
    assert isinstance(accepted, Accepted)
    assert accepted.event["id_number"] == VALID_ID
    assert "id_number" not in validate_event(event("payment.disbursed")).event
    assert any(r.startswith("person_id: must be absent") for r in rejected(event("job.posted", person_id="p1")))
    assert any(r.startswith("id_number:") for r in rejected(event("job.posted", id_number=VALID_ID)))
    assert validate_event(event("job.posted", person_id=None)).event["person_id"] is None


def test_raw_id_in_person_id_is_refused_without_echo() -> None:
    reasons = rejected(event("payment.disbursed", person_id=VALID_ID))
    assert reasons == ["person_id: looks like a raw national ID number: send it as id_number instead"]


@pytest.mark.parametrize("bad_id", ["110101199003071234", "11010119900307123", "1101011990030712AB",
                                    "110101199003071233000", 110101199003071233])
def test_invalid_id_numbers_never_echoed(bad_id: object) -> None:
    reasons = rejected(event("payment.disbursed", person_id=None, id_number=bad_id))
    assert any(r.startswith("id_number:") for r in reasons)
    assert str(bad_id)[:17] not in " ".join(reasons)


def test_id_like_keys_are_masked_in_reasons() -> None:
    obj = event("payment.disbursed")
    obj["payload"][VALID_ID] = 1
    text = " ".join(rejected(obj))
    assert VALID_ID not in text
    assert "unknown field" in text


def test_lowercase_x_is_normalised() -> None:
    number = "11010519491231002x"
    obj = event("payment.disbursed", person_id=None, id_number=number)
    assert validate_event(obj).event["id_number"] == number.upper()


@pytest.mark.parametrize("obj", [None, [], "x", 1, 1.5, True, [event("job.posted")]])
def test_non_objects(obj: object) -> None:
    assert rejected(obj)[0].startswith("event: must be a JSON object")


def test_profile_change_keeps_only_given_fields_and_needs_one() -> None:
    result = validate_event(event("person.profile_changed"))
    assert result.event["payload"] == {"grade": 1, "hardship": False}
    obj = event("person.profile_changed")
    obj["payload"] = {}
    assert rejected(obj) == ["payload: must change at least one of category, grade, hardship, "
                             "certificate_expires, name, phone"]


def test_a_name_and_a_phone_are_optional_and_absent_unless_given() -> None:
    registered = event("person.registered")
    assert "name" not in validate_event(registered).event["payload"]
    registered["payload"].update(name="王秀英", phone="+86 138-0000-1234")
    assert validate_event(registered).event["payload"]["name"] == "王秀英"
    registered["payload"]["phone"] = "call me"
    assert rejected(registered)[0].startswith("payload.phone: must be a phone number")
    change = event("person.profile_changed")
    change["payload"] = {"phone": "13800001234"}
    assert validate_event(change).event["payload"] == {"phone": "13800001234"}


def test_optional_payload_fields_present_as_null() -> None:
    obj = event("service.delivered")
    del obj["payload"]["need_id"]
    assert validate_event(obj).event["payload"]["need_id"] is None
    assert validate_event(event("visit.completed", 2)).event["payload"]["duration_minutes"] == 45


def test_all_reasons_at_once() -> None:
    obj = event("payment.disbursed")
    obj["payload"] = {"program": "x", "amount_fen": "5", "period": "2024-13"}
    reasons = rejected(obj)
    assert [r.split(":")[0] for r in reasons] == ["payload.program", "payload.amount_fen", "payload.period"]
    assert reasons[1] == "payload.amount_fen: must be an integer > 0 (fen; 1 yuan = 100 fen)"


# ---- JSON lines ----------------------------------------------------------------------------------
def test_parse_json_line() -> None:
    assert parse_json_line('{"a": [1, 2]}\n') == {"a": [1, 2]}
    with pytest.raises(InvalidJson, match="invalid JSON at column 1"):
        parse_json_line("")
    with pytest.raises(InvalidJson, match="at column 7"):
        parse_json_line('{"a": }')
    for text in ("NaN", '{"a": Infinity}', '{"a": 1, "a": 2}', "[" * 100_000, "1" * 5000):
        with pytest.raises(InvalidJson):
            parse_json_line(text)


def test_duplicate_key_message_masks_ids() -> None:
    with pytest.raises(InvalidJson) as info:
        parse_json_line(f'{{"{VALID_ID}": 1, "{VALID_ID}": 2}}')
    assert VALID_ID not in str(info.value)


# ---- derived values -----------------------------------------------------------------------------
@pytest.mark.parametrize(("ts", "day"), [
    ("2024-03-05T10:12:00+08:00", "2024-03-05"),
    ("2024-03-05T20:00:00Z", "2024-03-06"),
    ("2024-03-05T15:59:59-00:00", "2024-03-05"),
    ("2024-12-31T11:00:00-05:00", "2025-01-01"),
    ("1988-07-01T23:30:00+08:00", "1988-07-02"),  # Shanghai had summer time until 1991
])
def test_event_date_is_shanghai_calendar_date(ts: str, day: str) -> None:
    assert event_date({"occurred_at": ts}) == day


def test_partition_key() -> None:
    assert partition_key(validate_event(event("payment.disbursed")).event) == "p0123456789abcdef0123456789abcdef"
    assert partition_key(validate_event(event("job.posted")).event) == "某某公司"
    with pytest.raises(ValueError):
        partition_key({"type": "payment.disbursed", "person_id": None, "payload": {}})


# ---- consumed records ------------------------------------------------------------------------------
def wire(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize("key", sorted(PAYLOADS), ids=lambda k: f"{k[0]}-v{k[1]}")
def test_decode_consumed_round_trip_upcasts(key: tuple[str, int]) -> None:
    canonical = validate_event(event(*key)).event
    decoded = decode_consumed(wire(canonical))
    assert decoded["version"] == (2 if key[0] == "visit.completed" else 1)
    assert {k: v for k, v in decoded.items() if k not in ("version", "payload")} == \
        {k: v for k, v in canonical.items() if k not in ("version", "payload")}


def test_decode_consumed_non_canonical_but_valid_input() -> None:
    obj = event("visit.completed")
    text = json.dumps({"payload": obj.pop("payload"), **obj}, indent=2).encode()
    assert decode_consumed(text)["payload"]["duration_minutes"] is None


@pytest.mark.parametrize("raw", [
    b"\xff\xfe", b"", b"[]", b'{"type":"payment.disbursed"}', b'{"type":"nope","version":1}',
    wire(event("payment.disbursed", version=9)),
    wire({**event("payment.disbursed"), "payload": {"program": "living_subsidy", "amount_fen": -1,
                                                   "period": "2024-03"}}),
    wire(event("payment.disbursed", person_id=None, id_number=VALID_ID)),
    wire(event("payment.disbursed", version=True)),
])
def test_decode_consumed_poison(raw: bytes) -> None:
    with pytest.raises(PoisonRecord) as info:
        decode_consumed(raw)
    assert info.value.reason
    assert VALID_ID not in info.value.reason


def test_decode_consumed_accepts_memoryview_and_str() -> None:
    raw = wire(validate_event(event("job.posted")).event)
    assert decode_consumed(memoryview(raw)) == decode_consumed(raw.decode())
