"""The stored rows of a person are the aggregate the fold built: written, then loaded back for a
plan naming everything, they give the same core, payments, pending reversals, needs and alerts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from processors.domain.aggregate import PersonAggregate
from processors.domain.batch import StatePlan
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections.sql.rows import (
    NO_STAMP,
    PERSON_COLUMNS,
    pack_stamps,
    person_from_row,
    person_row,
    unpack_stamps,
)
from projections.sql.store import SqlStore
from projections.sql.tables import PROFILE_COLUMNS
from tests.unit.processors.domain.factories import (
    need,
    payment,
    placed,
    profile_changed,
    registered,
    reversal,
    run,
    status,
    visit,
)


def _events() -> list[dict]:
    return [
        registered(eid="r1", grade=1, hardship=True, at="2024-01-02T09:00:00+08:00", village=None, town="城关镇"),
        payment(eid="pay1", period="2024-02"),
        payment(eid="pay2", period="2024-02", amount_fen=5),
        reversal("pay2", eid="rev1"),
        reversal("ghost", eid="rev2"),
        visit("home_visit", ["mental_health_crisis", "unsafe_housing"], eid="v1"),
        need("n1", "care", eid="nr1"),
        placed(need_id="n2", eid="jp1"),
        status("deceased", "2024-01-15", eid="s1", at="2024-03-01T00:00:00Z"),
    ]


def test_a_core_row_round_trips() -> None:
    aggs, _, _ = run(_events())
    agg = aggs["p1"]
    again = person_from_row(person_row(agg))
    for name in ("town", "village", "category", "grade", "birth_date", "hardship", "certificate_expires",
                 "profile_stamps", "registered_on", "status", "status_effective", "status_stamp", "end_date",
                 "end_event_id", "end_occurred_at", "last_home_visit"):
        assert getattr(again, name) == getattr(agg, name), name
    assert person_from_row(person_row(PersonAggregate("p9"))) == PersonAggregate("p9")


def test_the_stored_rows_load_back_as_the_folded_aggregate(tmp_path: Path) -> None:
    events = _events()
    aggs, _, _ = run(events)
    store = SqlStore(f"sqlite:///{tmp_path / 'r.sqlite3'}", default_rules())
    store.migrate()
    store.apply_batch([Consumed(0, i, e) for i, e in enumerate(events)])
    plan = StatePlan(persons={"p1"}, cores={"p1"}, groups={("p1", "living_subsidy", "2024-02")},
                     pending={"ghost", "pay2"}, needs={("p1", "n1"), ("p1", "n2")})
    with store.writer.transaction() as uow:
        loaded = uow.load(plan)["p1"]
        # a batch that only pays or reverses for p1 loads the end date alone of the core
        end_only = uow.load(dataclasses.replace(plan, cores=set()))["p1"]
    want = aggs["p1"]
    assert loaded.payments == want.payments and want.payments
    assert loaded.pending_reversals == want.pending_reversals == {"ghost": "rev2"}
    assert loaded.needs == want.needs and set(want.needs) == {"n1", "n2"}
    assert loaded.alerts == want.alerts and want.alerts
    assert person_row(loaded) == person_row(want)
    assert (end_only.payments, end_only.alerts, end_only.needs) == (want.payments, want.alerts, want.needs)
    assert (end_only.end_date, end_only.end_event_id, end_only.end_occurred_at) == (
        want.end_date, want.end_event_id, want.end_occurred_at) and want.end_date
    assert end_only.town is None and end_only.profile_stamps == {} and want.town is not None
    with pytest.raises(ValueError, match="end date only"):  # never written back over the full row
        person_row(end_only)


def test_a_person_row_holds_the_shared_stamp_once() -> None:
    """The registration's stamp is written once (``stamp``), the fields a later change stamped
    (the envelope's town and village, the grade) keep their own, a field never stamped says so
    ("") - and the row loads back with the same stamps."""
    agg, _, _ = run([registered(eid="r1", at="2024-01-02T09:00:00+08:00"),
                     profile_changed(grade=1, eid="u1", at="2024-03-01T09:00:00+08:00")])
    person = agg["p1"]
    stamps = dict(person.profile_stamps)
    first, later = min(stamps.values()), max(stamps.values())
    later_fields = {n for n, s in stamps.items() if s == later}
    assert first != later and later_fields == {"town", "village", "grade"}, stamps
    row = dict(zip(PERSON_COLUMNS, person_row(person), strict=True))
    assert row["stamp"] == first
    assert {n for n in PROFILE_COLUMNS if row[f"stamp_{n}"] == later} == later_fields
    assert {n for n in PROFILE_COLUMNS if row[f"stamp_{n}"] is None} == {n for n, s in stamps.items() if s == first}
    assert {n for n in PROFILE_COLUMNS if row[f"stamp_{n}"] == NO_STAMP} == {"name", "phone"} == (
        set(PROFILE_COLUMNS) - set(stamps))
    assert person_from_row(person_row(person)).profile_stamps == stamps


@pytest.mark.parametrize("stamps", [
    {}, {"town": "b"}, {"town": "b", "phone": "a"}, {n: "s" for n in PROFILE_COLUMNS},
    {n: str(i % 3) for i, n in enumerate(PROFILE_COLUMNS)},
])
def test_stamps_pack_and_unpack(stamps: dict[str, str]) -> None:
    packed = pack_stamps(stamps)
    assert unpack_stamps(packed) == stamps
    earliest = min(stamps.values(), default=None)  # held once; only the fields with another stamp hold theirs
    held = sum(s is not None and s != NO_STAMP for s in packed)
    assert held == (earliest is not None) + sum(s != earliest for s in stamps.values())
