"""``check_line`` gives the same outcome whether the fast input decoder vouched for the line or the
full check ran, and the fast path is really taken for ordinary lines."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers import line_check
from producers.line_check import LineOutcome, check_line
from producers.pipeline import NO_RULES, prepare
from producers.pseudonym import Pseudonymiser
from producers.simulate.generator import SimConfig, generate
from producers.simulate.geo import TOWNS
from schemas.input_rules import InputRules
from schemas.privacy import has_plain_sensitive
from schemas.validation import InvalidJson, Rejected, parse_json_line, partition_key
from schemas.wire import NotFast, fast_input
from tests.unit.schemas.input_lines import VALID, lines

PSEUDONYMISER = Pseudonymiser(b"k" * 32)
RULES = [NO_RULES, InputRules(towns=tuple(name for name, _, _ in TOWNS))]


def reference(number: int, line: bytes, rules: InputRules) -> LineOutcome:
    """``check_line`` as it was before the fast path: decode, parse, ``prepare``."""
    if number == 1 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"invalid UTF-8 at byte {exc.start + 1}"]
    try:
        obj = parse_json_line(text)
    except InvalidJson as exc:
        return [str(exc)]
    result, value = prepare(obj, PSEUDONYMISER, rules, seal=False)
    if isinstance(result, Rejected):
        return result.reasons
    event = result.event
    return (event["event_id"], partition_key(event), value, event.get("person_id"),
            event if has_plain_sensitive(event) else None)


def simulated(**config: Any) -> list[bytes]:
    events = generate(SimConfig(persons=200, seed=1, **config))
    return [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for e in events]


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The lines ``check_line`` gave to the full check (the fast decoder did not vouch for them)."""
    seen: list[bytes] = []
    full = line_check._validate

    def counted(line: bytes) -> Any:
        seen.append(line)
        return full(line)

    monkeypatch.setattr(line_check, "_validate", counted)
    return seen


@pytest.mark.parametrize("config", [{}, {"id_number_fraction": 1.0}], ids=["person_id", "id_number"])
def test_simulated_lines_take_the_fast_path(config: dict[str, Any], full_checks: list[bytes]) -> None:
    raw = simulated(**config)
    assert len(raw) > 1000
    if config:
        assert sum(b'"id_number":' in line for line in raw) > len(raw) * 0.9
    outcomes = [check_line(n, line, len(line), PSEUDONYMISER) for n, line in enumerate(raw, 1)]
    assert full_checks == []
    assert all(isinstance(outcome, tuple) for outcome in outcomes)
    for line in raw:  # and the decoder itself vouches for every one
        fast_input(line)
    sample = list(itertools.islice(enumerate(raw, 1), 0, None, 7))
    assert [outcomes[n - 1] for n, _ in sample] == [reference(n, line, NO_RULES) for n, line in sample]


def test_a_line_it_cannot_vouch_for_gets_the_full_check(full_checks: list[bytes]) -> None:
    line = json.dumps(VALID[0], ensure_ascii=False).replace('"town"', '"town": "x", "town"').encode()
    with pytest.raises(NotFast):
        fast_input(line)
    assert check_line(2, line, len(line), PSEUDONYMISER) == ["invalid JSON: duplicate key town"]
    assert full_checks == [line]


def test_same_outcome_either_way() -> None:
    seen = {"accepted": 0, "rejected": 0}

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(lines(), st.sampled_from(RULES))
    def check(numbered: tuple[int, bytes], rules: InputRules) -> None:
        number, line = numbered
        outcome = check_line(number, line, len(line), PSEUDONYMISER, rules=rules)
        assert outcome == reference(number, line, rules)
        seen["accepted" if isinstance(outcome, tuple) else "rejected"] += 1

    check()
    assert seen["accepted"] > 100 and seen["rejected"] > 100, seen
