"""Property: the same set of events in any arrival order gives the same aggregates, alerts and
summed count facts (and those facts agree with the reference counts)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.domain.alerts import evaluate_alerts
from processors.domain.counts import KINDS, reference_counts

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

PERSONS = ("p1", "p2")
# includes the same instant written with two offsets, and a Shanghai month boundary
TIMES = (
    "2024-01-31T23:30:00+00:00", "2024-02-01T07:30:00+08:00", "2024-02-01T08:00:00+08:00",
    "2024-03-05T10:00:00+08:00", "2024-03-05T02:00:00Z", "2024-04-01T00:00:00+08:00",
)
DATES = ("2024-01-31", "2024-02-01", "2024-02-29", "2024-03-31")
PERIODS = ("2024-01", "2024-02", "2024-03", "2024-04")
PROGRAMS = ("living_subsidy", "nursing_subsidy")
HAZARDS = ("unsafe_housing", "medical_emergency")


@st.composite
def event_sets(draw):
    n = draw(st.integers(1, 14))
    events = []
    for i in range(n):
        eid = f"e{i:02d}"
        kw = {
            "eid": eid,
            "person": draw(st.sampled_from(PERSONS)),
            "at": draw(st.sampled_from(TIMES)),
            "town": draw(st.sampled_from(("T1", "T2"))),
        }
        kind = draw(st.sampled_from(
            ("reg", "profile", "status", "visit", "pay", "pay", "pay", "rev", "rev", "need", "fulfil", "post")))
        if kind == "reg":
            ev = registered(grade=draw(st.integers(1, 4)), hardship=draw(st.booleans()),
                            certificate_expires=draw(st.sampled_from(DATES)), **kw)
        elif kind == "profile":
            fields = draw(st.dictionaries(
                st.sampled_from(("grade", "hardship", "certificate_expires")),
                st.sampled_from((1, 3, True, False, "2024-05-01")), min_size=1))
            ev = profile_changed(**fields, **kw)
        elif kind == "status":
            ev = status(draw(st.sampled_from(("active", "cancelled", "deceased"))), draw(st.sampled_from(DATES)), **kw)
        elif kind == "visit":
            hazards = draw(st.lists(st.sampled_from(HAZARDS), max_size=2))
            ev = visit(draw(st.sampled_from(("home_visit", "assessment"))), hazards, **kw)
        elif kind == "pay":
            ev = payment(draw(st.sampled_from(PROGRAMS)), draw(st.sampled_from(PERIODS)),
                         draw(st.sampled_from((1, 20000, 500000))), **kw)
        elif kind == "rev":
            ev = reversal(f"e{draw(st.integers(0, n)):02d}", **kw)  # may name a non-payment or unknown id
        elif kind == "need":
            ev = need(draw(st.sampled_from(("n1", "n2"))), draw(st.sampled_from(("care", "employment"))), **kw)
        elif kind == "fulfil":
            builder = draw(st.sampled_from((service, placed)))
            ev = builder(need_id=draw(st.sampled_from(("n1", "n2", None))), **kw)
        else:
            kw.pop("person")
            ev = posted(draw(st.integers(1, 5)), **kw)
        events.append(ev)
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sets(), data=st.data())
def test_arrival_order_does_not_matter(events, data):
    order_a = data.draw(st.permutations(events))
    order_b = data.draw(st.permutations(events))
    # re-sent payments/reversals (the store dedupes them, apply must stay idempotent anyway)
    resent = [e for e in events if e["type"] in ("payment.disbursed", "payment.reversed")]
    order_b = order_b + data.draw(st.lists(st.sampled_from(resent), max_size=3)) if resent else order_b

    aggs_a, facts_a, _ = run(order_a)
    aggs_b, facts_b, _ = run(order_b)

    assert aggs_a == aggs_b
    for pid, agg in aggs_a.items():
        assert evaluate_alerts(agg, RULES) == agg.alerts == aggs_b[pid].alerts
    assert facts_a == facts_b
    for kind in KINDS:
        rows = {k: v for k, v in facts_a.items() if k.kind == kind}
        expected = reference_counts(order_b, kind)
        assert sum(v.events for v in rows.values()) == expected["events"]
        assert sum(v.amount_fen for v in rows.values()) == expected["amount_fen"]
        assert sum(v.positions for v in rows.values()) == expected["positions"]
        assert len({k.person_id for k, v in rows.items() if k.person_id and v.events > 0}) == expected["persons"]
        assert all(v.events >= 0 and v.amount_fen >= 0 for v in rows.values())

