from dataclasses import replace
from datetime import date, timedelta

import pytest

from processors.domain.warnings import evaluate_warnings

from .factories import (
    RULES,
    need,
    payment,
    placed,
    profile_changed,
    registered,
    reversal,
    run,
    service,
    status,
    visit,
)

REG_AT = "2024-01-01T10:00:00+08:00"  # registered_on 2024-01-01
FAR_CERT = "2099-01-01"


def warnings_of(events, as_of: date, rules=RULES, rule: str | None = None):
    aggs, _, _ = run(events)
    found = evaluate_warnings(aggs["p1"], as_of, rules)
    return [w for w in found if rule is None or w.rule == rule]


def person(grade=3, hardship=False, cert=FAR_CERT, at=REG_AT):
    return registered(grade=grade, hardship=hardship, certificate_expires=cert, at=at)


# --- visit_overdue ------------------------------------------------------------------------------


@pytest.mark.parametrize("days_after, due", [(89, False), (90, False), (91, True), (200, True)])
def test_visit_overdue_boundary_from_last_home_visit(days_after, due):
    last = date(2024, 3, 10)
    events = [person(grade=1), visit("home_visit", at="2024-03-10T09:00:00+08:00")]
    found = warnings_of(events, last + timedelta(days=days_after), rule="visit_overdue")
    assert bool(found) is due
    if due:
        assert found[0].since == "2024-06-09" == (last + timedelta(days=91)).isoformat()
        assert found[0].town == "T1" and found[0].person_id == "p1"


@pytest.mark.parametrize("days_after, due", [(89, False), (90, False), (91, True)])
def test_visit_overdue_falls_back_to_registration_date(days_after, due):
    found = warnings_of([person(hardship=True)], date(2024, 1, 1) + timedelta(days=days_after), rule="visit_overdue")
    assert bool(found) is due
    if due:
        assert found[0].since == "2024-04-01"


def test_visit_overdue_uses_shanghai_date_of_the_visit():
    # 2024-03-09T23:30Z is 2024-03-10 in Shanghai: 91 days later is 2024-06-09
    events = [person(grade=2), visit("home_visit", at="2024-03-09T23:30:00+00:00")]
    assert not warnings_of(events, date(2024, 6, 8), rule="visit_overdue")
    assert warnings_of(events, date(2024, 6, 9), rule="visit_overdue")


@pytest.mark.parametrize("grade, hardship, applies", [(1, False, True), (2, False, True), (3, False, False),
                                                     (4, True, True), (3, True, True)])
def test_visit_overdue_population(grade, hardship, applies):
    assert bool(warnings_of([person(grade=grade, hardship=hardship)], date(2025, 1, 1), rule="visit_overdue")) is applies


def test_other_visit_kinds_do_not_reset_the_clock():
    events = [person(grade=1), visit("assessment", at="2024-12-20T09:00:00+08:00")]
    assert warnings_of(events, date(2025, 1, 1), rule="visit_overdue")[0].since == "2024-04-01"


def test_visit_overdue_threshold_from_config():
    rules = replace(RULES, visit_overdue_days=30)
    assert warnings_of([person(grade=1)], date(2024, 2, 1), rules, rule="visit_overdue")[0].since == "2024-02-01"


# --- need_unmet -------------------------------------------------------------------------------


@pytest.mark.parametrize("need_type, deadline", sorted(RULES.need_deadline_days.items()))
def test_need_unmet_boundary_per_need_type(need_type, deadline):
    events = [person(), need("n1", need_type, at="2024-03-01T10:00:00+08:00")]
    registered_on = date(2024, 3, 1)
    assert not warnings_of(events, registered_on + timedelta(days=deadline), rule="need_unmet")
    [found] = warnings_of(events, registered_on + timedelta(days=deadline + 1), rule="need_unmet")
    assert found.since == (registered_on + timedelta(days=deadline + 1)).isoformat()
    assert (found.need_id, found.need) == ("n1", need_type)
    assert found.to_dict()["need_id"] == "n1"


def test_fulfilled_needs_never_warn():
    events = [person(), need("n1", "care"), service(need_id="n1"), need("n2", "employment"),
              placed(need_id="n2", at="2025-01-01T10:00:00+08:00"), need("n3", "care")]
    found = warnings_of(events, date(2026, 1, 1), rule="need_unmet")
    assert [w.need_id for w in found] == ["n3"]


def test_fulfilment_before_need_registration():
    events = [person(), service(need_id="n1", at="2024-02-01T10:00:00+08:00"),
              need("n1", "care", at="2024-03-01T10:00:00+08:00")]
    assert warnings_of(events, date(2026, 1, 1), rule="need_unmet") == []


def test_fulfilment_without_registered_need_does_not_warn():
    assert warnings_of([person(), service(need_id="ghost")], date(2026, 1, 1), rule="need_unmet") == []


def test_need_unmet_order_is_by_need_id():
    events = [person(), need("n2", "care"), need("n1", "care")]
    assert [w.need_id for w in warnings_of(events, date(2026, 1, 1), rule="need_unmet")] == ["n1", "n2"]


# --- certificate_expiring -----------------------------------------------------------------------


@pytest.mark.parametrize("as_of, due", [
    (date(2024, 5, 1), False),  # expires in 61 days
    (date(2024, 5, 2), True),   # expires in exactly 60 days: on or before as_of + 60
    (date(2024, 7, 1), True),   # expires today
    (date(2024, 8, 1), True),   # already expired
])
def test_certificate_expiring_boundary(as_of, due):
    found = warnings_of([person(cert="2024-07-01")], as_of, rule="certificate_expiring")
    assert bool(found) is due
    if due:
        assert found[0].since == "2024-05-02"


def test_certificate_expiry_follows_profile_change():
    events = [person(cert="2024-07-01"),
              profile_changed(
                  certificate_expires="2029-07-01", at="2024-06-01T10:00:00+08:00")]
    assert warnings_of(events, date(2024, 6, 15), rule="certificate_expiring") == []


# --- nursing_subsidy_missing --------------------------------------------------------------------


def nursing(period, **kw):
    return payment("nursing_subsidy", period=period, amount_fen=20000, **kw)


@pytest.mark.parametrize("grade, due", [(1, True), (2, True), (3, False)])
def test_nursing_missing_grade(grade, due):
    found = warnings_of([person(grade=grade)], date(2024, 3, 15), rule="nursing_subsidy_missing")
    assert bool(found) is due
    if due:
        assert found[0].since == "2024-03-01"


@pytest.mark.parametrize("registered_at, due", [
    ("2024-01-31T10:00:00+08:00", True),   # before 2024-02-01
    ("2024-01-31T16:30:00+00:00", False),  # 2024-02-01 in Shanghai: not before
    ("2024-02-10T10:00:00+08:00", False),
])
def test_nursing_missing_registration_boundary(registered_at, due):
    found = warnings_of([person(grade=1, at=registered_at)], date(2024, 3, 15), rule="nursing_subsidy_missing")
    assert bool(found) is due


def test_nursing_paid_for_previous_month_clears():
    events = [person(grade=1), nursing("2024-02")]
    assert warnings_of(events, date(2024, 3, 1), rule="nursing_subsidy_missing") == []
    assert warnings_of(events, date(2024, 3, 31), rule="nursing_subsidy_missing") == []
    assert warnings_of(events, date(2024, 4, 1), rule="nursing_subsidy_missing")[0].since == "2024-04-01"


def test_nursing_wrong_period_or_program_or_reversed_does_not_count():
    as_of = date(2024, 3, 10)
    assert warnings_of([person(grade=1), nursing("2024-03")], as_of, rule="nursing_subsidy_missing")
    assert warnings_of([person(grade=1), payment("living_subsidy", period="2024-02")], as_of,
                       rule="nursing_subsidy_missing")
    events = [person(grade=1), nursing("2024-02", eid="np"), reversal("np")]
    assert warnings_of(events, as_of, rule="nursing_subsidy_missing")
    events = [person(grade=1), nursing("2024-02", eid="np"), reversal("np"), nursing("2024-02", eid="np2")]
    assert not warnings_of(events, as_of, rule="nursing_subsidy_missing")


def test_nursing_missing_in_january_looks_at_december():
    events = [person(grade=1, at="2023-06-01T10:00:00+08:00"), nursing("2023-12")]
    assert warnings_of(events, date(2024, 1, 20), rule="nursing_subsidy_missing") == []
    [found] = warnings_of([person(grade=1, at="2023-06-01T10:00:00+08:00")], date(2024, 1, 20),
                          rule="nursing_subsidy_missing")
    assert found.since == "2024-01-01" and "2023-12" in found.detail


# --- status and config --------------------------------------------------------------------------


ALL_DUE = [person(grade=1, hardship=True, cert="2024-01-15"), need("n1", "care", at=REG_AT)]


def test_all_rules_fire_for_an_active_person_in_stable_order():
    found = warnings_of(ALL_DUE, date(2024, 6, 1))
    assert [w.rule for w in found] == ["visit_overdue", "need_unmet", "certificate_expiring", "nursing_subsidy_missing"]


@pytest.mark.parametrize("status_", ["cancelled", "deceased"])
def test_only_active_persons_are_warned(status_):
    assert warnings_of([*ALL_DUE, status(status_, "2024-02-01")], date(2024, 6, 1)) == []


def test_reactivated_person_is_warned_again():
    events = [*ALL_DUE, status("cancelled", "2024-02-01"), status("active", "2024-03-01")]
    assert len(warnings_of(events, date(2024, 6, 1))) == 4


def test_unregistered_person_has_no_warnings():
    aggs, _, _ = run([need("n1", "care"), payment("nursing_subsidy")])
    assert evaluate_warnings(aggs["p1"], date(2030, 1, 1), RULES) == []


def test_person_active_without_registration_only_gets_need_warnings():
    events = [status("active", "2024-01-01"), need("n1", "care", at=REG_AT)]
    assert [w.rule for w in warnings_of(events, date(2030, 1, 1))] == ["need_unmet"]


def test_disabled_warning_rules():
    rules = replace(RULES, enabled_rules=frozenset({"need_unmet"}))
    assert [w.rule for w in warnings_of(ALL_DUE, date(2024, 6, 1), rules)] == ["need_unmet"]
