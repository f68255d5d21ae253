import pytest

from processors.domain.counts import reference_counts
from processors.domain.model import FactDelta, FactKey
from processors.domain.reducer import Projector

from .factories import (
    RULES,
    need,
    payment,
    placed,
    posted,
    profile_changed,
    registered,
    reversal,
    run,
    service,
    status,
    visit,
)

PAY_KEY = FactKey("payment", "living_subsidy", "T1", "2024-03-05", "p1")


def test_job_posted_has_no_aggregate():
    agg, effects = Projector(RULES).apply(None, posted(5))
    assert agg is None and effects.person_changed is None
    assert effects.fact_deltas == [(FactKey("posting", "", "T1", "2024-03-05", ""), FactDelta(1, 0, 5))]


def test_first_event_creates_the_aggregate():
    agg, effects = Projector(RULES).apply(None, service())
    assert agg is not None and agg.person_id == "p1" and effects.person_changed == "p1"
    agg2, effects = Projector(RULES).apply(agg, service())
    assert agg2 is agg and effects.person_changed is None and len(effects.fact_deltas) == 1


def test_aggregate_of_another_person_is_refused():
    agg, _ = Projector(RULES).apply(None, service())
    with pytest.raises(ValueError, match="another person"):
        Projector(RULES).apply(agg, service(person="p2"))


def test_status_and_profile_events_are_not_counted():
    _, facts, _ = run([status("active", "2024-01-01"), profile_changed(grade=2), reversal("x")])
    assert facts == {}


def test_payment_then_reversal_gives_negative_delta_for_the_payment_row():
    _, _, effects = run([
        payment(eid="pay", amount_fen=30000),
        reversal("pay", eid="rev", at="2024-04-10T10:00:00+08:00", town="T9"),
    ])
    assert effects[0].fact_deltas == [(PAY_KEY, FactDelta(1, 30000))]
    assert effects[1].fact_deltas == [(PAY_KEY, FactDelta(-1, -30000))]  # payment's town/date, not the reversal's


def test_reversal_before_payment_makes_it_contribute_nothing():
    aggs, facts, effects = run([reversal("pay", eid="rev"), payment(eid="pay")])
    assert facts == {} and effects[0].person_changed == "p1"
    assert aggs["p1"].payments["pay"].reversed_by == "rev" and aggs["p1"].pending_reversals == {}


def test_second_reversal_is_a_no_op():
    aggs, facts, effects = run([payment(eid="pay"), reversal("pay", eid="r2"), reversal("pay", eid="r3")])
    assert facts == {} and effects[2].fact_deltas == [] and effects[2].person_changed is None
    # the smaller reversal id is recorded whatever the arrival order
    aggs_b, _, _ = run([payment(eid="pay"), reversal("pay", eid="r3"), reversal("pay", eid="r2")])
    assert aggs["p1"] == aggs_b["p1"]


def test_unknown_reversal_target_stays_pending():
    aggs, facts, _ = run([payment(eid="pay"), reversal("other", eid="rev")])
    assert aggs["p1"].pending_reversals == {"other": "rev"}
    assert facts == {PAY_KEY: FactDelta(1, 50000)}


def test_resent_events_are_idempotent():
    pay = payment(eid="pay")
    rev = reversal("pay", eid="rev")
    vis = visit(hazards=["unsafe_housing"], eid="vis")
    aggs, facts, effects = run([pay, vis, pay, rev, rev, pay])
    assert effects[2].fact_deltas == [] and effects[2].alerts_changed == [] and effects[2].person_changed is None
    assert effects[4].fact_deltas == [] and effects[5].fact_deltas == []
    assert facts == {FactKey("visit", "home_visit", "T1", "2024-03-05", "p1"): FactDelta(1)}
    projector = Projector(RULES)
    _, again = projector.apply(aggs["p1"], vis)
    assert again.alerts_changed == []


def test_facts_match_reference_counts():
    events = [
        registered(), registered(person="p2", category="mental", town="T2"), payment(eid="a"),
        payment(eid="b", person="p2", program="education_aid", amount_fen=9),
        reversal("a"), reversal("zz"), visit("assessment"), need("n1"), service(need_id="n1"),
        placed("flexible"), posted(4), payment(eid="c", at="2024-01-31T23:30:00+00:00"),
    ]
    _, facts, _ = run(events)
    for kind in ("payment", "service", "visit", "job", "need", "person", "posting"):
        rows = {k: v for k, v in facts.items() if k.kind == kind}
        expected = reference_counts(events, kind)
        assert sum(v.events for v in rows.values()) == expected["events"]
        assert sum(v.amount_fen for v in rows.values()) == expected["amount_fen"]
        assert sum(v.positions for v in rows.values()) == expected["positions"]
        assert len({k.person_id for k, v in rows.items() if k.person_id and v.events > 0}) == expected["persons"]
    assert FactKey("payment", "living_subsidy", "T1", "2024-02-01", "p1") in facts


def test_registration_sets_profile_status_and_date():
    aggs, _, _ = run([registered(grade=2, hardship=True, at="2024-01-31T23:30:00+00:00", town="T3", village="V3")])
    agg = aggs["p1"]
    assert (agg.town, agg.village, agg.grade, agg.hardship, agg.category) == ("T3", "V3", 2, True, "physical")
    assert (agg.birth_date, agg.certificate_expires) == ("1970-01-01", "2030-01-01")
    assert (agg.registered_on, agg.status, agg.status_effective) == ("2024-02-01", "active", "2024-02-01")


def test_profile_changes_are_order_independent_per_field():
    reg = registered(grade=4, at="2024-01-01T10:00:00+08:00", town="T1")
    change = profile_changed(grade=2, town="T2", village=None, at="2024-02-01T10:00:00+08:00")
    late_old = profile_changed(hardship=True, certificate_expires="2025-01-01", at="2024-01-15T10:00:00+08:00")
    a, _, _ = run([reg, change, late_old])
    b, _, _ = run([late_old, change, reg])
    assert a["p1"] == b["p1"]
    agg = a["p1"]
    assert (agg.grade, agg.town, agg.village, agg.hardship, agg.certificate_expires) == (2, "T2", None, True, "2025-01-01")
    assert agg.category == "physical" and agg.registered_on == "2024-01-01"


def test_profile_change_older_than_applied_is_ignored():
    aggs, _, effects = run([
        profile_changed(grade=1, at="2024-05-01T10:00:00+08:00"),
        profile_changed(grade=3, at="2024-04-01T10:00:00+08:00"),
    ])
    assert aggs["p1"].grade == 1 and effects[1].person_changed is None


def test_profile_timestamps_compare_as_instants():
    aggs, _, _ = run([
        profile_changed(grade=1, at="2024-05-01T10:00:00+08:00"),  # 02:00Z
        profile_changed(grade=3, at="2024-05-01T03:00:00+00:00"),  # later instant, smaller text
    ])
    assert aggs["p1"].grade == 3


def test_status_in_force_is_latest_effective_and_end_date_is_earliest():
    events = [
        registered(at="2023-01-01T10:00:00+08:00"),
        status("cancelled", "2024-02-01", eid="s1", at="2024-02-02T10:00:00+08:00"),
        status("active", "2024-03-01", eid="s2", at="2024-03-02T10:00:00+08:00"),
        status("deceased", "2024-01-10", eid="s3", at="2024-03-05T10:00:00+08:00"),
    ]
    aggs, _, _ = run(events)
    agg = aggs["p1"]
    assert (agg.status, agg.status_effective) == ("active", "2024-03-01")
    assert (agg.end_date, agg.end_event_id) == ("2024-01-10", "s3")
    rev, _, _ = run(list(reversed(events)))
    assert rev["p1"] == agg


def test_registration_after_cancellation_reactivates():
    aggs, _, _ = run([status("cancelled", "2023-05-01"), registered(at="2024-01-01T10:00:00+08:00")])
    assert aggs["p1"].status == "active" and aggs["p1"].end_date == "2023-05-01"


def test_last_home_visit_is_the_max_date_of_home_visits_only():
    aggs, _, _ = run([
        visit("home_visit", at="2024-03-10T10:00:00+08:00"),
        visit("home_visit", at="2024-02-10T10:00:00+08:00"),
        visit("assessment", at="2024-04-10T10:00:00+08:00"),
    ])
    assert aggs["p1"].last_home_visit == "2024-03-10"


def test_needs_and_fulfilment_in_any_order():
    events = [
        placed(need_id="n1", eid="j1", at="2024-03-10T10:00:00+08:00"),
        need("n1", "employment", eid="nr1", at="2024-03-01T10:00:00+08:00"),
        service(need_id="n1", eid="s0", at="2024-03-08T10:00:00+08:00"),
    ]
    a, _, _ = run(events)
    b, _, _ = run(list(reversed(events)))
    assert a["p1"] == b["p1"]
    n1 = a["p1"].needs["n1"]
    assert (n1.need, n1.registered_on, n1.fulfilled_on, n1.fulfilled_by) == ("employment", "2024-03-01", "2024-03-08", "s0")


def test_alerts_changed_only_when_content_changes():
    _, _, effects = run([
        payment(eid="a"),
        payment(eid="b"),
        payment(eid="c"),
        reversal("c"),
        reversal("b"),
        visit(hazards=[]),
    ])
    assert [a.status for a in effects[1].alerts_changed] == ["open"]
    assert effects[2].alerts_changed[0].event_ids == ("a", "b", "c")
    assert effects[3].alerts_changed == []  # still two live payments: content unchanged
    assert [a.status for a in effects[4].alerts_changed] == ["resolved"]
    assert effects[5].alerts_changed == []


def test_every_state_change_is_reported_where_it_is_stored():
    """The batch fold writes back exactly what the effects name: the core for person_changed, a
    need for needs_changed, a payment for payments_changed, a pending reversal for pending_changed."""
    pay = payment(eid="pay1")
    _, _, effects = run([registered(), need("n1"), service(), service(need_id="n1"), visit("assessment"),
                         reversal("pay1", eid="rev1"), pay, visit("home_visit")])
    assert [e.person_changed for e in effects] == ["p1", None, None, None, None, None, None, "p1"]
    assert [e.needs_changed for e in effects] == [[], ["n1"], [], ["n1"], [], [], [], []]
    assert [e.pending_changed for e in effects] == [[], [], [], [], [], ["pay1"], ["pay1"], []]
    assert [e.payments_changed for e in effects] == [[], [], [], [], [], [], ["pay1"], []]
