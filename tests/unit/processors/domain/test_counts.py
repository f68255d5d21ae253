from datetime import date

import pytest

from processors.domain.counts import event_fact, reference_counts
from processors.domain.model import FactDelta, FactKey

from .factories import need, payment, placed, posted, registered, reversal, service, status, visit

ZERO = {"events": 0, "persons": 0, "amount_fen": 0, "positions": 0}


@pytest.mark.parametrize("ev, kind, key", [
    (payment("nursing_subsidy", amount_fen=12345), "payment", "nursing_subsidy"),
    (service("online_ward"), "service", "online_ward"),
    (visit("family_doctor"), "visit", "family_doctor"),
    (placed("sheltered"), "job", "sheltered"),
    (need("n1", "care"), "need", "care"),
    (registered(category="mental"), "person", "mental"),
])
def test_event_fact_per_kind(ev, kind, key):
    fact_key, delta = event_fact(ev)
    assert fact_key == FactKey(kind, key, "T1", "2024-03-05", "p1")
    assert delta == FactDelta(events=1, amount_fen=12345 if kind == "payment" else 0)


def test_posting_fact_has_no_person_and_counts_positions():
    assert event_fact(posted(7, town="T2")) == (FactKey("posting", "", "T2", "2024-03-05", ""), FactDelta(1, 0, 7))


def test_uncounted_types():
    assert event_fact(status("active", "2024-01-01")) is None
    assert event_fact(reversal("x")) is None


def test_fact_date_is_shanghai_date():
    fact_key, _ = event_fact(visit(at="2024-01-31T23:30:00+00:00"))
    assert fact_key.date == "2024-02-01"


def test_reference_counts_dedupes_and_excludes_reversed_payments():
    p1 = payment(eid="a", amount_fen=100)
    p2 = payment(eid="b", amount_fen=200, person="p2")
    p3 = payment(eid="c", amount_fen=400, program="education_aid")
    events = [reversal("a", eid="r"), p1, p1, p2, p3, reversal("b", person="p3")]  # wrong person: no effect
    assert reference_counts(events, "payment") == {"events": 2, "persons": 2, "amount_fen": 600, "positions": 0}
    assert reference_counts(events, "payment", key="education_aid")["amount_fen"] == 400


def test_reference_counts_filters_dates_inclusive_and_town():
    events = [
        visit(at="2024-01-31T15:59:59+00:00"),  # 2024-01-31 in Shanghai
        visit(at="2024-01-31T23:30:00+00:00", person="p2"),  # 2024-02-01
        visit(at="2024-02-29T12:00:00+08:00", town="T2", person="p2"),
        visit(at="2024-03-01T00:00:00+08:00"),
    ]
    assert reference_counts(events, "visit", date_from="2024-02-01", date_to="2024-02-29")["events"] == 2
    assert reference_counts(events, "visit", date_from=date(2024, 2, 1), date_to=date(2024, 2, 29)) == {
        "events": 2, "persons": 1, "amount_fen": 0, "positions": 0}
    assert reference_counts(events, "visit", date_to="2024-01-31")["events"] == 1
    assert reference_counts(events, "visit", date_from="2024-03-01")["events"] == 1
    assert reference_counts(events, "visit", town="T2")["events"] == 1
    assert reference_counts(events, "visit", key="assessment") == ZERO
    assert reference_counts(events, "payment") == ZERO


def test_reference_counts_postings():
    events = [posted(3), posted(4, town="T2")]
    assert reference_counts(events, "posting") == {"events": 2, "persons": 0, "amount_fen": 0, "positions": 7}
    assert reference_counts(events, "posting", key="")["positions"] == 7
