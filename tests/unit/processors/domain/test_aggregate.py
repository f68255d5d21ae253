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


def test_state_held_for_rules():
    agg = full_aggregate()
    assert (agg.grade, agg.hardship, agg.village, agg.registered_on) == (1, True, None, "2024-01-02")
    assert agg.status == "deceased" and agg.end_date == "2024-01-15" and agg.end_event_id == "s1"
    assert agg.payments["pay2"].reversed_by == "rev1" and agg.payments["pay1"].reversed_by is None
    assert agg.pending_reversals == {"ghost": "rev2"}
    assert agg.last_home_visit == "2024-03-05"
    assert agg.needs["n2"].need is None and agg.needs["n2"].fulfilled_by == "jp1"
