import json

import pytest

from processors.domain.aggregate import PersonAggregate

from .factories import need, payment, placed, registered, reversal, run, status, visit


def full_aggregate() -> PersonAggregate:
    events = [
        registered(eid="r1", grade=1, hardship=True, at="2024-01-02T09:00:00+08:00", village=None),
        payment(eid="pay1", period="2024-02"),
        payment(eid="pay2", period="2024-02", amount_fen=5),
        reversal("pay2", eid="rev1"),
        reversal("ghost", eid="rev2"),
        visit("home_visit", ["mental_health_crisis", "unsafe_housing"], eid="v1"),
        need("n1", "care", eid="nr1"),
        placed(need_id="n2", eid="jp1"),
        status("deceased", "2024-01-15", eid="s1", at="2024-03-01T00:00:00Z"),
    ]
    aggs, _, _ = run(events)
    return aggs["p1"]


def test_round_trip_is_exact():
    agg = full_aggregate()
    text = agg.to_json()
    again = PersonAggregate.from_json(text)
    assert again == agg
    assert again.to_json() == text
    assert again.alerts == agg.alerts and agg.alerts
    assert isinstance(next(iter(again.alerts.values())).event_ids, tuple)
    assert isinstance(again.hazard_visits["v1"].hazards, tuple)


def test_round_trip_of_an_empty_aggregate():
    agg = PersonAggregate("p9")
    assert PersonAggregate.from_json(agg.to_json()) == agg


def test_json_is_compact_and_keeps_chinese_text():
    agg = PersonAggregate("p9", town="城关镇")
    text = agg.to_json()
    assert " " not in text.replace("城关镇", "") and "城关镇" in text
    assert json.loads(text)["id"] == "p9"


def test_unknown_format_version_is_refused():
    data = json.loads(PersonAggregate("p9").to_json())
    data["v"] = 99
    with pytest.raises(ValueError, match="unsupported PersonAggregate format 99"):
        PersonAggregate.from_json(json.dumps(data))


def test_state_held_for_rules():
    agg = full_aggregate()
    assert (agg.grade, agg.hardship, agg.village, agg.registered_on) == (1, True, None, "2024-01-02")
    assert agg.status == "deceased" and agg.end_date == "2024-01-15" and agg.end_event_id == "s1"
    assert agg.payments["pay2"].reversed_by == "rev1" and agg.payments["pay1"].reversed_by is None
    assert agg.pending_reversals == {"ghost": "rev2"}
    assert agg.last_home_visit == "2024-03-05"
    assert agg.needs["n2"].need is None and agg.needs["n2"].fulfilled_by == "jp1"
