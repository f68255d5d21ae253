"""Issue 13.3: an event of a person with 20 years of monthly payments in three programs costs what
an event of a new person costs - the batch loads the same state for both, not the history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event

from processors.domain.batch import plan
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections.sql.store import SqlStore
from tests.unit.processors.domain.factories import payment, registered, reversal

PROGRAMS = ("living_subsidy", "nursing_subsidy", "medical_insurance_subsidy")
YEARS = range(2004, 2024)


def history(person: str) -> list[dict[str, Any]]:
    out = [registered(person=person, eid=f"reg-{person}", at="2004-01-02T09:00:00+08:00")]
    for year in YEARS:
        for month in range(1, 13):
            for program in PROGRAMS:
                out.append(payment(program, f"{year}-{month:02d}", 50_000, person=person,
                                   eid=f"{person}-{program}-{year}-{month}", at=f"{year}-{month:02d}-05T10:00:00+08:00"))
    return out


def loaded(store: SqlStore, events: list[dict[str, Any]]) -> dict[str, int]:
    """What the runtime's step 5 loads for ``events``: rows per kind of state."""
    with store.writer.transaction() as uow:
        aggs = uow.load(plan(events))
    return {"persons": len(aggs), "payments": sum(len(a.payments) for a in aggs.values()),
            "pending": sum(len(a.pending_reversals) for a in aggs.values()),
            "alerts": sum(len(a.alerts) for a in aggs.values())}


def test_a_long_history_is_not_loaded_for_a_new_event(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'bounded.sqlite3'}", default_rules())
    store.migrate()
    old = history("veteran")
    assert len(old) == 1 + len(YEARS) * 12 * len(PROGRAMS)  # 721 events
    records = [*old, registered(person="newcomer", eid="reg-newcomer", at="2024-01-02T09:00:00+08:00")]
    for i in range(0, len(records), 500):
        store.apply_batch([Consumed(0, i + j, e) for j, e in enumerate(records[i:i + 500])])

    next_month = {p: payment("living_subsidy", "2024-01", 50_000, person=p, eid=f"{p}-next",
                             at="2024-01-05T10:00:00+08:00") for p in ("veteran", "newcomer")}
    veteran, newcomer = loaded(store, [next_month["veteran"]]), loaded(store, [next_month["newcomer"]])
    assert veteran == newcomer == {"persons": 1, "payments": 0, "pending": 0, "alerts": 0}

    # a payment of a period already paid loads that one group only (the duplicate rule needs it)
    again = payment("nursing_subsidy", "2015-06", 50_000, person="veteran", eid="veteran-dup",
                    at="2024-01-05T10:00:00+08:00")
    assert loaded(store, [again])["payments"] == 1
    store.close()


def _veteran_store(tmp_path: Path) -> tuple[SqlStore, list[dict[str, Any]]]:
    """A SQLite store holding the veteran's 721 events, and those events."""
    store = SqlStore(f"sqlite:///{tmp_path / 'plans.sqlite3'}", default_rules())
    store.migrate()
    old = history("veteran")
    store.apply_batch([Consumed(0, i, e) for i, e in enumerate(old)])
    return store, old


@contextmanager
def recorded_statements(store: SqlStore) -> Iterator[list[tuple[str, Any]]]:
    """Every statement (and its parameters) the store runs inside the block."""
    executed: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        executed.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", remember)
    try:
        yield executed
    finally:
        event.remove(store.engine, "before_cursor_execute", remember)


def test_every_load_query_searches_an_index(tmp_path: Path) -> None:
    """Bounded rows are not enough: a query that returns one group but scans the whole ledger grows
    with history all the same (the row-value ``IN (VALUES ...)`` did, on SQLite).  Every query of
    step 5 must be an index search on each table it reads."""
    store, _old = _veteran_store(tmp_path)
    again = payment("nursing_subsidy", "2015-06", 50_000, person="veteran", eid="veteran-dup2",
                    at="2024-01-05T10:00:00+08:00")
    other = payment("living_subsidy", "2016-02", 50_000, person="veteran", eid="veteran-dup3",
                    at="2024-01-05T10:00:00+08:00")
    with recorded_statements(store) as executed:
        loaded(store, [again, other, registered(person="veteran", eid="reg-again", at="2024-01-06T09:00:00+08:00")])
    selects = [(s, p) for s, p in executed if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert any("ledger" in s for s, _ in selects)
    _assert_no_scans(_plans(store, selects))
    store.close()


def _plans(store: SqlStore, statements: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
    """SQLite's plan of each statement: the ``detail`` column of ``EXPLAIN QUERY PLAN``."""
    raw = store.engine.raw_connection()
    try:
        return [(statement, [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)])
                for statement, parameters in statements]
    finally:
        raw.close()


def _assert_no_scans(plans: list[tuple[str, list[str]]]) -> None:
    for statement, rows in plans:
        scans = [r for r in rows if r.startswith("SCAN ") and "CONSTANT ROW" not in r and "subquery" not in r
                 and not r.startswith("SCAN _keys")]
        assert not scans, f"{statement[:120]}... scans {scans}"


def test_a_batch_finds_its_duplicates_and_the_payments_it_reverses_through_indexes(tmp_path: Path) -> None:
    """Every statement of a batch that re-sends an event and reverses a 2015 payment - the
    de-duplication, the reversal's load, the payment's update and its change record - is an index
    search; the de-duplication's index leads with the day, so that the keys of a batch of new
    events land near one another (docs/performance.md, "Which pages a commit writes")."""
    store, old = _veteran_store(tmp_path)
    back = reversal("veteran-nursing_subsidy-2015-6", person="veteran", eid="rev-2015-06",
                    at="2024-01-05T10:00:00+08:00")
    with recorded_statements(store) as executed:
        applied = store.apply_batch([Consumed(0, len(old) + i, e) for i, e in enumerate([old[5], back])])
    executed = [(s, p) for s, p in executed
                if "ledger" in s and not s.lstrip().upper().startswith("INSERT INTO LEDGER ")]
    assert applied == 1  # the re-sent 2004 payment is known; the reversal applies
    plans = _plans(store, executed)
    assert len(plans) >= 4, [s[:60] for s, _ in plans]  # de-dup, load, update, change record
    _assert_no_scans(plans)
    dedup = [rows for statement, rows in plans if statement.lstrip().startswith("SELECT event_id, date FROM ledger")]
    assert dedup and all("ux_ledger_date_event_id" in " ".join(rows) for rows in dedup), dedup
    with store.engine.connect() as conn:
        reversed_by = conn.exec_driver_sql("SELECT reversed_by, counted FROM ledger WHERE event_id = "
                                           "'veteran-nursing_subsidy-2015-6'").one()
    assert tuple(reversed_by) == ("rev-2015-06", 0)
    store.close()
