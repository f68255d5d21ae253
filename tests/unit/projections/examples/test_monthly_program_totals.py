"""The worked example projection: its reducer, and the store contract on its SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.domain.counts import reference_counts
from processors.domain.model import Consumed
from projections.examples.monthly_program_totals import MonthlyProgramTotalsStore, State, reduce_payment
from tests.support.store_contract import StoreContract, apply
from tests.unit.projections.gen import Gen, to_records


def pay(eid: str, amount: int = 50000, at: str = "2024-03-05T10:00:00+08:00", person: str = "p1") -> dict:
    return {"event_id": eid, "type": "payment.disbursed", "version": 1, "occurred_at": at, "person_id": person,
            "town": "T1", "village": None, "source": "t",
            "payload": {"program": "living_subsidy", "amount_fen": amount, "period": "2024-03"}}


def rev(eid: str, reverses: str, person: str = "p1") -> dict:
    return {"event_id": eid, "type": "payment.reversed", "version": 1, "occurred_at": "2024-03-06T10:00:00+08:00",
            "person_id": person, "town": "T1", "village": None, "source": "t",
            "payload": {"reverses": reverses, "reason": "x"}}


def test_reducer_handles_reversals_in_either_order() -> None:
    state = State({}, {})
    assert reduce_payment(state, pay("a")) == [(("2024-03", "living_subsidy", "T1"), 1, 50000)]
    assert reduce_payment(state, rev("r", "a")) == [(("2024-03", "living_subsidy", "T1"), -1, -50000)]
    assert reduce_payment(state, rev("r2", "b")) == []
    assert reduce_payment(state, pay("b")) == []  # its reversal came first
    assert reduce_payment(state, rev("r3", "c", person="p2")) == []
    assert reduce_payment(state, pay("c")) != []  # a reversal by another person does not count


def test_totals_through_the_runtime(tmp_path: Path) -> None:
    store = MonthlyProgramTotalsStore(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.migrate()
    batch = [Consumed(0, 0, pay("a")), Consumed(0, 1, pay("b", 1000)), Consumed(0, 2, None),
             Consumed(0, 3, pay("a"))]  # a re-sent event
    assert apply(store, batch) == 2
    assert apply(store, batch) == 0  # redelivered: skipped by its positions
    assert apply(store, [Consumed(1, 0, rev("r", "b"))]) == 1
    assert store.totals() == [{"month": "2024-03", "program": "living_subsidy", "events": 1, "amount_fen": 50000}]
    assert store.offsets() == {0: 3, 1: 0}
    assert store.counts("payment", "living_subsidy")["amount_fen"] == 50000


def test_totals_equal_the_payments_of_a_generated_stream(tmp_path: Path) -> None:
    events = Gen(seed=5, persons=40).stream(500)
    store = MonthlyProgramTotalsStore(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.migrate()
    apply(store, to_records(events))
    want = reference_counts(events, "payment")
    got = store.counts("payment")
    assert (got["events"], got["amount_fen"]) == (want["events"], want["amount_fen"]) and want["events"] > 50


class TestMonthlyProgramTotalsStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory, self.opened = tmp_path, 0

    def make_store(self) -> MonthlyProgramTotalsStore:
        self.opened += 1
        store = MonthlyProgramTotalsStore(f"sqlite:///{self.directory / f'm{self.opened}.sqlite3'}")
        store.migrate()
        return store
