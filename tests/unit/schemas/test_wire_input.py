"""The fast input decoder (``schemas.wire.fast_input``) says what the full check says.

Invariant: whatever ``fast_input`` accepts, ``validate_event(parse_json_line(...))`` accepts too
and returns an equal dict, keys in the same order (the wire bytes depend on it); whatever it does
not vouch for is ``NotFast``, never another error, and the full check gives the reasons.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from schemas.jsontext import dumps_bytes
from schemas.validation import Accepted, InvalidJson, Rejected, parse_json_line, validate_event
from schemas.wire import NotFast, fast_input
from tests.unit.schemas.examples import event
from tests.unit.schemas.input_lines import SEPARATORS, VALID, lines


def slow(raw: bytes) -> Accepted | Rejected | str:
    """What the full check says of a line: its verdict, or why it is not JSON."""
    try:
        return validate_event(parse_json_line(raw.decode("utf-8")))
    except (UnicodeDecodeError, InvalidJson) as exc:
        return str(exc)


def assert_same(fast: dict[str, Any], raw: bytes) -> None:
    verdict = slow(raw)
    assert isinstance(verdict, Accepted), verdict
    assert fast == verdict.event
    assert dumps_bytes(fast) == dumps_bytes(verdict.event)  # same key order too


@pytest.mark.parametrize("obj", VALID, ids=lambda e: f"{e['type']}{'+id_number' if 'id_number' in e else ''}")
@pytest.mark.parametrize("ensure_ascii", [False, True])
@pytest.mark.parametrize("separators", SEPARATORS[:3])
def test_valid_lines_decode_to_the_validators_dict(obj: dict[str, Any], ensure_ascii: bool,
                                                  separators: tuple[str, str]) -> None:
    raw = json.dumps(obj, ensure_ascii=ensure_ascii, separators=separators).encode()
    assert_same(fast_input(raw), raw)


@pytest.mark.parametrize("raw", [
    json.dumps(event("job.posted")).replace('"event_id"', '"event_id": "a", "event_id"').encode(),
    json.dumps(event("payment.disbursed")).replace('"amount_fen"', '"amount_fen": 5, "amount_fen"').encode(),
    json.dumps(event("payment.disbursed")).replace('"amount_fen"', '"amount_fen" :5, "\\u0061mount_fen"').encode(),
    json.dumps(event("service.delivered", payload={"service": "assistive_device_fitting"}))
    .replace('"service"', '"service": "massage", "service"').encode(),
    json.dumps(event("job.placed")).replace('"town"', '"town": null, "town"').encode(),
    json.dumps(event("alert.handled")).replace('"note"', '"note": null, "note"').encode(),
    json.dumps(event("payment.disbursed")).replace('"payload"', '"payload": {}, "payload"').encode(),
], ids=["envelope", "payload", "escaped", "absent-field-repeated", "null-then-text", "text-then-null", "payload"])
def test_a_repeated_key_is_never_vouched_for(raw: bytes) -> None:
    with pytest.raises(NotFast):
        fast_input(raw)
    assert "duplicate key" in str(slow(raw))


@pytest.mark.parametrize("obj", [
    event("payment.disbursed", sealed={"v": 1, "alg": "AES-256-GCM", "kid": "k", "nonce": "A" * 16, "ct": "AAAA"}),
    event("payment.disbursed", id_number="11010519491231002X"),
    event("job.posted", id_number="11010519491231002X"),
    event("payment.disbursed", person_id=None),
    event("payment.disbursed", person_id="110101199003071233"),
    event("payment.disbursed", person_id=None, id_number="110101199003071234"),
])
def test_what_the_person_rule_or_sealing_refuses_is_not_vouched_for(obj: dict[str, Any]) -> None:
    raw = json.dumps(obj).encode()
    with pytest.raises(NotFast):
        fast_input(raw)
    assert isinstance(slow(raw), Rejected)


@pytest.mark.parametrize("number", ["11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ", "110105 19491231 002X"])
def test_an_id_number_the_models_normalise_is_left_to_them(number: str) -> None:
    raw = json.dumps(event("payment.disbursed", person_id=None, id_number=number), ensure_ascii=False).encode()
    with pytest.raises(NotFast):
        fast_input(raw)
    verdict = slow(raw)
    assert isinstance(verdict, Accepted) and verdict.event["id_number"] == "11010519491231002X"


def test_never_accepts_what_the_full_check_refuses() -> None:
    seen = {"fast": 0, "fallback": 0, "valid": 0}

    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(lines())
    def check(numbered: tuple[int, bytes]) -> None:
        raw = numbered[1]
        verdict = slow(raw)
        seen["valid"] += isinstance(verdict, Accepted)
        try:
            fast = fast_input(raw)
        except NotFast:
            seen["fallback"] += 1
            return
        seen["fast"] += 1
        assert_same(fast, raw)

    check()
    # both branches were exercised: about 6 % of the generated lines take the fast path (a bound
    # of 100 of 1,500 failed now and then: 93 in one run)
    assert seen["fast"] > 30 and seen["fallback"] > 100 and seen["valid"] > seen["fast"] // 2, seen
