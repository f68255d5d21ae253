"""Ingest input lines for the tests of the fast input decoder (``schemas.wire.fast_input``): valid
events written the ways people write JSON, and mutations of them - of the object (fields dropped,
replaced, added; ``id_number`` variants; ``sealed``) and of the bytes (repeated and escaped keys,
NaN, huge numbers, invalid UTF-8, lone surrogates, a byte-order mark, stray bytes)."""

from __future__ import annotations

import copy
import itertools
import json
import re
from typing import Any

from hypothesis import strategies as st

from producers.simulate.generator import SimConfig, generate
from tests.unit.schemas.examples import PAYLOADS, event

ID_NUMBER = "11010519491231002X"


def _with_id_number(obj: dict[str, Any], number: str = ID_NUMBER) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj.pop("person_id", None)
    obj["id_number"] = number
    return obj


_SIMULATED = list(itertools.islice(generate(SimConfig(persons=60, seed=3, id_number_fraction=0.5)), 400))

#: valid events the fast decoder vouches for (tests/unit/schemas/test_wire_input.py checks that)
VALID: list[dict[str, Any]] = [
    *(event(*key) for key in sorted(PAYLOADS)),
    *(_with_id_number(event(*key)) for key in sorted(PAYLOADS) if key[0] != "job.posted"),
    _with_id_number(event("person.registered"), "110101199003071233"),
    event("person.registered", payload={**PAYLOADS[("person.registered", 1)], "name": "李明", "phone": "138-0000-1234"}),
    event("visit.completed", 2, payload={**PAYLOADS[("visit.completed", 2)], "duration_minutes": None}),
    event("service.delivered", payload={"service": "assistive_device_fitting", "need_id": None}),
    event("service.delivered", payload={"service": "assistive_device_fitting"}),
    event("job.placed", payload={**PAYLOADS[("job.placed", 1)], "need_id": "n-2"}),
    event("alert.handled", payload={"alert_id": "A1", "action": "assign", "by": "admin", "assignee": "cw-2"}),
    event("alert.handled", payload={"alert_id": "A1", "action": "resolve", "by": "admin", "note": None}),
    event("job.posted", person_id=None, village=None, source=None),
    event("payment.disbursed", version=1, occurred_at="2024-03-05 10:12:00.123456789Z", id_number=None),
    *_SIMULATED[::20],
]

ID_NUMBERS = [
    ID_NUMBER, "110101199003071233", "11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ",
    "110105 19491231 002X", "110105-19491231-002X", " 11010519491231002X", "11010519491231002X\u200b",
    "110101199003071234", "11010119900307123", "1101011990030712331", "11010119900307123A", "",
    "1101051949123100２X", 110101199003071233, None,
]
SEALED = {"v": 1, "alg": "AES-256-GCM", "kid": "k1", "nonce": "AAAAAAAAAAAAAAAA", "ct": "AAAA"}
KEYS = ["event_id", "type", "version", "occurred_at", "person_id", "id_number", "town", "village", "source",
        "payload", "sealed", "amount_fen", "period", "program", "hazards", "name", "phone", "need_id", "visitor",
        "grade", "status", "note", "assignee", "duration_minutes", "certificate_expires", "action"]
values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**13), st.text(max_size=12),
    st.sampled_from([
        "", " ", "\u3000", "\x1c", "2024-02-29", "2023-02-29", "2024-3-05", "2024-03", "2024-13",
        "2024-03-05T10:12:00+08:00", "2024-03-05T10:12:60+08:00", "2024-03-05T10:12:00", "2024-03-05t10:12:00z",
        "p1", "living_subsidy", "home_visit", "unsafe_housing", "assign", "\t", "a\"b", "a\\b", "a\":b",
        "\ud800", "a\udfffb", "\U0001f600", "\u0000", "锦屏\u200b街道", ID_NUMBER, "110101199003071233",
        1.0, 2.5, 10**30, -0, [], ["unsafe_housing"], {}, {"a": 1}, SEALED,
    ]),
)
#: JSON text spliced in as a value: what ``json.dumps`` would not write, or writes differently
LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1E2", b"-0", b"1.0", b"9" * 5000, b"true", b"null",
            b"[]", b"{}", b'"\\ud800"', b'"\\u0031"', b'"x"', b"12050", b"1"]
STRAY = [b"\xff", b"\xe4\xb8", b"\xed\xa0\x80", b"\xc0\x80", b"\x00", b"\x0c", b"\\", b'"', b",", b"}", b" ",
         b"\xef\xbb\xbf", b"\xe3\x80\x80"]
SEPARATORS = [(",", ":"), (", ", ": "), (" , ", " : "), (",\t", ":\t"), (",\r\n", ":")]


def _escaped(key: str) -> str:
    """``key`` with its first character written as a ``\\u`` escape: the same key once decoded."""
    return f"\\u{ord(key[0]):04x}{key[1:]}"


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    obj = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 3))):
        payload = obj.get("payload")
        target = payload if isinstance(payload, dict) and draw(st.booleans()) else obj
        action = draw(st.sampled_from(["drop", "set", "set", "id_number", "sealed"]))
        if action == "drop" and target:
            target.pop(draw(st.sampled_from(sorted(target))))
        elif action == "set":
            target[draw(st.sampled_from(KEYS) | st.text(min_size=1, max_size=8))] = draw(values)
        elif action == "id_number":
            if draw(st.booleans()):
                obj.pop("person_id", None)
            obj["id_number"] = draw(st.sampled_from(ID_NUMBERS))
        elif action == "sealed":
            obj["sealed"] = SEALED
    return obj


def _dumps(obj: Any, ensure_ascii: bool, separators: tuple[str, str]) -> bytes:
    # a lone surrogate written raw is CESU-8, not UTF-8: one more way a line is invalid
    return json.dumps(obj, ensure_ascii=ensure_ascii, separators=separators).encode("utf-8", "surrogatepass")


_OPENING = {"envelope": re.compile(rb"\{"), "payload": re.compile(rb'"payload"\s*:\s*\{')}


def _insert_into(raw: bytes, where: str, text: bytes) -> bytes:
    """``text`` right after the opening brace of the envelope or the payload (if there is one)."""
    found = _OPENING[where].search(raw)
    return raw if found is None else raw[:found.end()] + text + raw[found.end():]


@st.composite
def lines(draw: st.DrawFn) -> tuple[int, bytes]:
    """(line number, line): a valid event or a mutation of one, as bytes."""
    obj = draw(_mutated())
    raw = _dumps(obj, draw(st.booleans()), draw(st.sampled_from(SEPARATORS)))
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["repeat", "repeat", "literal", "stray", "cut"]))
        if action in ("repeat", "literal"):  # a key given twice (maybe escaped), or an unusual value
            where = draw(st.sampled_from(["envelope", "payload"]))
            key = draw(st.sampled_from(KEYS))
            name = _escaped(key) if draw(st.booleans()) else key
            value = draw(st.sampled_from(LITERALS)) if action == "literal" else _dumps(draw(values), True, (",", ":"))
            raw = _insert_into(raw, where, b'"' + name.encode() + b'":' + value + b",")
        elif action == "stray":
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.sampled_from(STRAY)) + raw[at:]
        else:
            at = draw(st.integers(0, len(raw) - 1))
            raw = raw[:at] + raw[at + 1:]
    if draw(st.integers(0, 9)) == 0:
        raw = b"\xef\xbb\xbf" + raw
    return draw(st.sampled_from([1, 2])), raw + draw(st.sampled_from([b"", b"\n", b"\r\n", b" \n"]))
