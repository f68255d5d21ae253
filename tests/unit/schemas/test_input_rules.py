"""Input rules at the door (issue 15.2 and 15.4): the district's towns, the window of
``occurred_at``, control and invisible characters, normalised place names."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from careledger.settings import DEFAULT_TOWNS
from schemas.input_rules import InputRules
from schemas.jsontext import dumps_compact
from schemas.validation import Accepted, validate_event
from tests.unit.schemas.examples import event

RULES = InputRules(towns=DEFAULT_TOWNS)


def apply(obj: dict, rules: InputRules = RULES) -> tuple[list[str], dict]:
    result = validate_event(obj)
    assert isinstance(result, Accepted), result
    canonical = result.event
    reasons, _ = rules.apply(canonical, dumps_compact(canonical))
    return reasons, canonical


@pytest.mark.parametrize("town", ["锦屏街", "锦屏街道道", "錦屏街道", "Jinping", "城关镇", "锦屏 街道 东"])
def test_an_unknown_town_is_refused_with_the_valid_ones(town: str) -> None:
    reasons, _ = apply(event("need.registered", town=town))
    [reason] = reasons
    assert reason.startswith("town: must be one of the district's 12 towns")
    assert all(name in reason for name in DEFAULT_TOWNS)


def test_a_near_miss_gets_a_suggestion() -> None:
    [reason] = apply(event("need.registered", town="锦屏街"))[0]
    assert "(did you mean 锦屏街道?)" in reason


@pytest.mark.parametrize("written", ["锦屏街道\u200b", "\ufeff锦屏街道", " 锦屏街道 ", "锦屏　街道", "锦\u200d屏街道"])
def test_a_town_with_invisible_characters_or_blanks_is_the_town(written: str) -> None:
    reasons, canonical = apply(event("need.registered", town=written))
    assert reasons == [] and canonical["town"] == "锦屏街道"


def test_towns_come_from_configuration() -> None:
    rules = InputRules(towns=("城关镇", "东城街道"))
    assert apply(event("need.registered", town="城关镇"), rules)[0] == []
    [reason] = apply(event("need.registered", town="锦屏街道"), rules)[0]
    assert "2 towns" in reason and "城关镇, 东城街道" in reason


def test_villages_stay_free_text_normalised() -> None:
    reasons, canonical = apply(event("need.registered", village="东村１组\u200b"))
    assert reasons == [] and canonical["village"] == "东村1组"
    assert apply(event("need.registered", village="新建村"))[1]["village"] == "新建村"
    assert apply(event("need.registered", village="\u200b\u200c"))[0] == [
        "village: blank once invisible characters are removed"]


def test_control_characters_are_refused_everywhere_line_breaks_only_in_reasons_and_notes() -> None:
    reasons, _ = apply(event("need.registered", village="东\x00村"))
    assert reasons == ["village: contains a control character (U+0000); remove it"]
    reasons, _ = apply(event("job.placed", payload={"employer": "某\x1b公司", "placement_kind": "flexible"}))
    assert reasons == ["payload.employer: contains a control character (U+001B); remove it"]
    ok = event("payment.reversed", payload={"reverses": "ev-0", "reason": "重复发放\n已追回"})
    assert apply(ok)[0] == []
    assert apply(event("need.registered", source="a\u2028b"))[0] == [
        "source: contains a control character (U+2028); remove it"]


def test_invisible_characters_are_refused_in_identifiers_and_removed_from_free_text() -> None:
    reasons, _ = apply(event("need.registered", event_id="ev\u200b-1"))
    assert reasons == ["event_id: contains an invisible character (U+200B); an identifier must be plain text"]
    reasons, _ = apply(event("need.registered", payload={"need_id": "n\ufeff1", "need": "care"}))
    assert reasons == ["payload.need_id: contains an invisible character (U+FEFF); an identifier must be plain text"]
    reasons, canonical = apply(event("visit.completed", payload={"visit_kind": "home_visit", "visitor": "王\u200b医生",
                                                                 "hazards": []}))
    assert reasons == [] and canonical["payload"]["visitor"] == "王医生"


EARLY = InputRules(towns=DEFAULT_TOWNS, earliest=date(2000, 1, 1), ahead_days=3)


@pytest.mark.parametrize("occurred_at", [
    "9999-12-31T23:00:00-10:00",  # beyond year 9999 in UTC: breaks every reader
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "9999-12-31T23:59:59+08:00",
    "1949-09-30T23:59:59+08:00",
    "1949-09-30T15:59:59Z",  # one second before 1949-10-01 00:00 in Shanghai
])
def test_occurred_at_outside_the_window_is_refused(occurred_at: str) -> None:
    [reason] = apply(event("need.registered", occurred_at=occurred_at))[0]
    assert reason.startswith("occurred_at: must be between 1949-10-01 and 3 days from now")
    assert "CARELEDGER_OCCURRED_AT_EARLIEST" in reason


@pytest.mark.parametrize("occurred_at", ["2008-01-01T00:00:00+08:00", "1949-10-01T00:00:00+08:00",
                                         "1949-09-30T16:00:00Z", "2024-03-05T10:12:00+08:00"])
def test_history_is_accepted(occurred_at: str) -> None:
    assert apply(event("need.registered", occurred_at=occurred_at))[0] == []


def test_the_window_ends_a_few_days_ahead_of_now() -> None:
    now = datetime.now(UTC)
    soon = (now + timedelta(days=2, hours=23)).isoformat(timespec="seconds")
    later = (now + timedelta(days=3, minutes=5)).isoformat(timespec="seconds")
    assert apply(event("need.registered", occurred_at=soon))[0] == []
    assert apply(event("need.registered", occurred_at=later))[0] != []
    assert apply(event("need.registered", occurred_at="1999-12-31T23:00:00+08:00"), EARLY)[0] != []
    assert apply(event("need.registered", occurred_at="2000-01-01T00:00:00+08:00"), EARLY)[0] == []


def test_rules_travel_to_worker_processes() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(EARLY))
    assert copy == EARLY and apply(event("need.registered", town="锦屏街道\u200b"), copy)[0] == []
