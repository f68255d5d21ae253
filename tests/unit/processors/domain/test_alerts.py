from dataclasses import replace

import pytest

from processors.domain.alerts import alert_id, evaluate_alerts
from processors.domain.reducer import Projector

from .factories import RULES, payment, reversal, run, status, visit


def alerts_of(events, rules=RULES, person="p1"):
    aggs, _, _ = run(events, rules)
    agg = aggs[person]
    evaluated = evaluate_alerts(agg, rules)
    assert evaluated == agg.alerts  # incremental == full evaluation
    return evaluated


def by_rule(alerts, rule):
    return sorted((a for a in alerts.values() if a.rule == rule), key=lambda a: a.event_ids)


# --- duplicate_payment ----------------------------------------------------------------------------


def test_duplicate_payment_opens_with_all_payments_of_the_group():
    alerts = alerts_of([
        payment(eid="b", at="2024-03-05T10:00:00+08:00", town="T1"),
        payment(eid="a", at="2024-03-06T10:00:00+08:00", town="T2"),
        payment(eid="c", period="2024-04"),
        payment(eid="d", program="nursing_subsidy"),
    ])
    [dup] = by_rule(alerts, "duplicate_payment")
    assert (dup.status, dup.severity, dup.event_ids) == ("open", "high", ("a", "b"))
    assert (dup.program, dup.period, dup.person_id) == ("living_subsidy", "2024-03", "p1")
    assert dup.detected_at == "2024-03-06T10:00:00+08:00" and dup.town == "T2"
    assert dup.alert_id == alert_id("duplicate_payment", "p1", "living_subsidy", "2024-03")
    assert dup.to_dict()["event_ids"] == ["a", "b"] and "hazard" not in dup.to_dict()


def test_single_payment_has_no_duplicate_alert():
    assert alerts_of([payment(eid="a"), payment(eid="b", period="2024-04")]) == {}


def test_reversal_after_duplicate_resolves_it():
    [dup] = by_rule(alerts_of([payment(eid="a"), payment(eid="b"), reversal("b")]), "duplicate_payment")
    assert dup.status == "resolved" and dup.event_ids == ("a", "b")


def test_reversal_before_duplicate_gives_the_same_resolved_alert():
    before = alerts_of([payment(eid="a"), reversal("b", eid="r"), payment(eid="b")])
    after = alerts_of([payment(eid="a"), payment(eid="b"), reversal("b", eid="r")])
    assert before == after and by_rule(before, "duplicate_payment")[0].status == "resolved"


def test_triple_needs_two_reversals_to_resolve():
    alerts = alerts_of([payment(eid="a"), payment(eid="b"), payment(eid="c"), reversal("a")])
    assert by_rule(alerts, "duplicate_payment")[0].status == "open"
    alerts = alerts_of([payment(eid="a"), payment(eid="b"), payment(eid="c"), reversal("a"), reversal("c")])
    assert by_rule(alerts, "duplicate_payment")[0].status == "resolved"


def test_all_reversed_group_is_resolved():
    alerts = alerts_of([payment(eid="a"), payment(eid="b"), reversal("a"), reversal("b")])
    assert by_rule(alerts, "duplicate_payment")[0].status == "resolved"


# --- payment_after_end ----------------------------------------------------------------------------


@pytest.mark.parametrize("end, period, fires", [
    ("2024-03-31", "2024-04", True),
    ("2024-04-01", "2024-04", False),  # period starts ON the end date: not after
    ("2024-03-31", "2024-03", False),
    ("2023-12-31", "2024-01", True),
])
def test_payment_after_end_boundary(end, period, fires):
    alerts = alerts_of([status("deceased", end, eid="s"), payment(eid="p", period=period)])
    assert bool(by_rule(alerts, "payment_after_end")) is fires


def test_death_arriving_after_payments_still_raises():
    pay = payment(eid="p", period="2024-05", at="2024-05-10T10:00:00+08:00")
    death = status("deceased", "2024-04-20", eid="s", at="2024-06-01T09:00:00+08:00")
    late = alerts_of([pay, death])
    early = alerts_of([death, pay])
    assert late == early
    [alert] = by_rule(late, "payment_after_end")
    assert alert.status == "open" and alert.event_ids == ("p", "s") and alert.severity == "high"
    assert alert.detected_at == "2024-06-01T09:00:00+08:00" and (alert.program, alert.period) == ("living_subsidy", "2024-05")


def test_cancelled_also_ends_and_active_does_not():
    assert by_rule(alerts_of([status("cancelled", "2024-01-01"), payment(period="2024-02")]), "payment_after_end")
    assert not by_rule(alerts_of([status("active", "2024-01-01"), payment(period="2024-02")]), "payment_after_end")


def test_end_date_is_monotonic_across_reactivation():
    events = [status("cancelled", "2024-01-15"), status("active", "2024-02-01"), payment(period="2024-03")]
    assert by_rule(alerts_of(events), "payment_after_end")


def test_earlier_end_date_extends_alerts_and_updates_event_ids():
    events = [
        payment(eid="p3", period="2024-03"), payment(eid="p5", period="2024-05"),
        status("deceased", "2024-04-10", eid="s2"), status("cancelled", "2024-02-10", eid="s1"),
    ]
    alerts = by_rule(alerts_of(events), "payment_after_end")
    assert [a.event_ids for a in alerts] == [("p3", "s1"), ("p5", "s1")]


def test_reversed_payment_after_end_is_resolved():
    [alert] = by_rule(alerts_of([status("deceased", "2024-01-01"), payment(eid="p"), reversal("p")]), "payment_after_end")
    assert alert.status == "resolved"
    [alert] = by_rule(alerts_of([reversal("p"), status("deceased", "2024-01-01"), payment(eid="p")]), "payment_after_end")
    assert alert.status == "resolved"


# --- visit_hazard ---------------------------------------------------------------------------------


def test_visit_hazard_one_alert_per_hazard_with_configured_severity():
    alerts = alerts_of([visit("home_visit", ["unsafe_housing", "mental_health_crisis", "unsafe_housing"],
                              eid="v", town="T7", at="2024-03-05T01:00:00Z")])
    got = {a.hazard: a for a in by_rule(alerts, "visit_hazard")}
    assert set(got) == {"unsafe_housing", "mental_health_crisis"}
    assert got["unsafe_housing"].severity == "high" and got["mental_health_crisis"].severity == "critical"
    assert got["unsafe_housing"].alert_id != got["mental_health_crisis"].alert_id
    alert = got["unsafe_housing"]
    assert (alert.status, alert.event_ids, alert.town, alert.detected_at) == ("open", ("v",), "T7", "2024-03-05T01:00:00Z")


@pytest.mark.parametrize("hazard, severity", [
    ("living_alone_no_caregiver", "high"), ("unsafe_housing", "high"), ("mental_health_crisis", "critical"),
    ("abuse_or_neglect", "critical"), ("medical_emergency", "critical"),
])
def test_hazard_severities(hazard, severity):
    [alert] = alerts_of([visit("rehab_in_village", [hazard])]).values()
    assert alert.severity == severity and alert.to_dict()["hazard"] == hazard


def test_visit_without_hazard_has_no_alert():
    assert alerts_of([visit("home_visit", [])]) == {}


# --- amount_out_of_range --------------------------------------------------------------------------


@pytest.mark.parametrize("program, amount, fires", [
    ("living_subsidy", 10000, False), ("living_subsidy", 100000, False),
    ("living_subsidy", 9999, True), ("living_subsidy", 100001, True),
    ("accident_insurance", 1000, False), ("accident_insurance", 999, True),
    ("education_aid", 2000000, False), ("education_aid", 2000001, True),
])
def test_amount_range_is_inclusive(program, amount, fires):
    alerts = by_rule(alerts_of([payment(program, amount_fen=amount, eid="p")]), "amount_out_of_range")
    assert bool(alerts) is fires
    if fires:
        assert (alerts[0].severity, alerts[0].event_ids, alerts[0].status) == ("medium", ("p",), "open")


def test_reversed_out_of_range_payment_is_resolved_in_both_orders():
    after = alerts_of([payment(amount_fen=1, eid="p"), reversal("p", eid="r")])
    before = alerts_of([reversal("p", eid="r"), payment(amount_fen=1, eid="p")])
    assert after == before and by_rule(after, "amount_out_of_range")[0].status == "resolved"


# --- ids, determinism, config -------------------------------------------------------------------


def test_alert_ids_are_stable_and_distinct():
    assert alert_id("x", "p", "a") == alert_id("x", "p", "a")
    assert len({alert_id("x", "p", "a"), alert_id("y", "p", "a"), alert_id("x", "q", "a"), alert_id("x", "p", "b")}) == 4
    assert alert_id("x", "p", "a").startswith("A") and len(alert_id("x", "p", "a")) == 21
    events = [payment(eid="a", amount_fen=1), payment(eid="b"), visit(hazards=["abuse_or_neglect"], eid="v")]
    assert alerts_of(events) == alerts_of(list(events))


def test_alerts_of_other_persons_are_separate():
    aggs, _, _ = run([payment(eid="a"), payment(eid="b", person="p2")])
    assert aggs["p1"].alerts == {} and aggs["p2"].alerts == {}


def test_disabled_rule_does_not_fire():
    rules = replace(RULES, enabled_rules=RULES.enabled_rules - {"duplicate_payment", "visit_hazard"})
    assert alerts_of([payment(eid="a"), payment(eid="b"), visit(hazards=["unsafe_housing"])], rules) == {}


def test_alert_that_stops_firing_is_kept_resolved():
    aggs, _, _ = run([payment(eid="a", amount_fen=1), visit(hazards=["unsafe_housing"], eid="v")])
    agg = aggs["p1"]
    wider = replace(RULES, amount_ranges_fen={**RULES.amount_ranges_fen, "living_subsidy": (0, 10**9)},
                    enabled_rules=RULES.enabled_rules - {"visit_hazard"})
    alerts = evaluate_alerts(agg, wider)
    assert {(a.rule, a.status) for a in alerts.values()} == {("amount_out_of_range", "resolved"), ("visit_hazard", "resolved")}
    # the reducer resolves it too when the payment is touched again
    _, effects = Projector(wider).apply(agg, reversal("a"))
    assert [(a.rule, a.status) for a in effects.alerts_changed] == [("amount_out_of_range", "resolved")]


def test_severity_comes_from_config():
    rules = replace(RULES, rule_severity={**RULES.rule_severity, "duplicate_payment": "critical"})
    [dup] = alerts_of([payment(eid="a"), payment(eid="b")], rules).values()
    assert dup.severity == "critical"
