"""The SQL read model on SQLite: alerts, warnings, reversals, a person's record, concurrency.

The generic guarantees (counts against the oracle, effectively-once, positions) are the store
contract's (tests/support/store_contract.py, run for SQLite in test_store_contract.py)."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest
from sqlalchemy import inspect

from processors.domain.model import Consumed
from processors.domain.reducer import Projector
from processors.domain.rules_config import default_rules
from processors.domain.warnings import evaluate_warnings
from processors.runtime.records import RawRecord
from projections import open_store
from projections.clickhouse.store import ClickHouseStore
from projections.sql.store import SqlStore
from tests.support.runtime import runtime_for
from tests.unit.projections.gen import KIND_KEYS, TOWNS, Gen, batches, to_records

RULES = default_rules()


def make_store(tmp_path, name: str = "p.sqlite3") -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / name}", RULES)
    store.migrate()
    return store


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return Gen(seed=11, persons=70).stream(700)


def _ev(eid: str, type_: str, payload: dict[str, Any], person: str | None = "px", day: str = "2024-03-05",
        town: str = "T1") -> dict[str, Any]:
    return {"event_id": eid, "type": type_, "version": 1, "occurred_at": f"{day}T10:00:00+08:00",
            "person_id": person, "town": town, "village": None, "source": "t", "payload": payload}


REG = _ev("r1", "person.registered", {"category": "physical", "grade": 1, "birth_date": "1960-01-01",
                                        "hardship": True, "certificate_expires": "2024-05-01"}, day="2023-01-10")
PAY = _ev("pay1", "payment.disbursed", {"program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"})
REV = _ev("rev1", "payment.reversed", {"reverses": "pay1", "reason": "x"}, day="2024-03-06")


@pytest.mark.parametrize("order", [("reg", "pay", "rev"), ("reg", "rev", "pay")])
@pytest.mark.parametrize("split", [False, True])
def test_reversal_before_or_after(tmp_path, order, split):
    store = make_store(tmp_path)
    events = {"reg": REG, "pay": PAY, "rev": REV}
    recs = [Consumed(0, i, events[name]) for i, name in enumerate(order)]
    if split:
        for r in recs:
            store.apply_batch([r])
    else:
        store.apply_batch(recs)
    assert store.counts("payment") == {"events": 0, "persons": 0, "amount_fen": 0, "positions": 0}
    ledger = {row[0]: row for row in store.snapshot_rows()["ledger"]}
    assert ledger["pay1"][10] == 0 and ledger["pay1"][11] == "rev1"  # kept, not counted, reversed by rev1
    assert store.counts("person")["persons"] == 1


def test_a_projector_failure_dead_letters_that_event_and_applies_the_rest(tmp_path):
    store = make_store(tmp_path)
    bad = _ev("bad", "payment.disbursed", {"amount_fen": 1})  # no program: the projector raises
    dead: list[tuple[int, list[str]]] = []
    runtime = runtime_for(store, dead_letter=lambda raw, reasons: dead.append((raw.offset, reasons)))
    records = [Consumed(0, 0, REG), Consumed(0, 1, bad), Consumed(0, 2, PAY)]
    raws = {(0, i): RawRecord(0, i, b"px", b"{}") for i in range(3)}
    assert runtime.apply_decoded(records, raws) == 2
    assert [offset for offset, _ in dead] == [1] and "KeyError" in dead[0][1][0]
    assert store.offsets() == {0: 2}
    assert [e["event_id"] for e in store.person_timeline("px")["events"]] == ["r1", "pay1"]


def test_alerts_appear_filter_and_keep_acknowledgement(tmp_path):
    store = make_store(tmp_path)
    hazard = _ev("v1", "visit.completed", {"visit_kind": "home_visit", "visitor": "w",
                                           "hazards": ["abuse_or_neglect", "unsafe_housing"]}, town="T2")
    dup = _ev("pay2", "payment.disbursed", {"program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"},
              day="2024-03-07")
    out_of_range = _ev("pay3", "payment.disbursed", {"program": "nursing_subsidy", "amount_fen": 5,
                                                     "period": "2024-03"}, day="2024-03-08")
    store.apply_batch([Consumed(0, i, e) for i, e in enumerate([REG, hazard, PAY, dup, out_of_range])])
    res = store.alerts(limit=100)
    rules = sorted(a["rule"] for a in res["items"])
    assert rules == ["amount_out_of_range", "duplicate_payment", "visit_hazard", "visit_hazard"]
    assert res["total"] == 4
    crit = [a for a in res["items"] if a.get("hazard") == "abuse_or_neglect"][0]
    assert crit["severity"] == "critical" and crit["event_ids"] == ["v1"] and crit["town"] == "T2"
    dup_alert = store.alerts(rule="duplicate_payment")["items"][0]
    assert dup_alert["status"] == "open" and set(dup_alert["event_ids"]) == {"pay1", "pay2"}
    assert dup_alert["program"] == "living_subsidy" and dup_alert["period"] == "2024-03"
    assert store.alerts(towns=["T1"])["total"] == 4  # the person lives in T1 (the hazard was seen in T2)
    assert store.alerts(towns=["T2"])["total"] == 0
    assert store.alerts(towns=[])["total"] == 0
    assert store.alerts(person_id="nobody")["total"] == 0
    page = store.alerts(limit=1, offset=1)
    assert page["total"] == 4 and len(page["items"]) == 1 and page["items"][0] == res["items"][1]

    acked = store.acknowledge_alert(dup_alert["alert_id"], "caseworker-1", "2024-03-09T09:00:00+08:00")
    assert acked is not None and acked["acknowledged_by"] == "caseworker-1"
    assert store.acknowledge_alert("no-such-alert", "x") is None
    # the reversal re-evaluates the rule: status resolves, the acknowledgement stays
    store.apply_batch([Consumed(0, 5, REV)])
    after = store.alerts(rule="duplicate_payment")["items"][0]
    assert after["status"] == "resolved"
    assert after["acknowledged_by"] == "caseworker-1"
    assert store.alerts(status="open")["total"] == 3

    # the outbox has one row per alert change, drained by the relay
    pending = store.outbox_pending(1000)
    assert [p["alert"]["alert_id"] for p in pending].count(dup_alert["alert_id"]) == 2
    assert pending[-1]["alert"]["status"] == "resolved"
    assert store.mark_sent([p["seq"] for p in pending[:3]]) == 3
    assert len(store.outbox_pending(1000)) == len(pending) - 3
    assert store.mark_sent([pending[0]["seq"]]) == 0


def test_access_follows_the_persons_current_town(tmp_path):
    """A caseworker's towns filter alerts and warnings by where the person lives now: after a move
    the old town's caseworker no longer sees them, the new town's does (issue 15.7)."""
    store = make_store(tmp_path)
    hazard = _ev("v1", "visit.completed", {"visit_kind": "home_visit", "visitor": "w", "hazards": ["unsafe_housing"]},
                 town="T1", day="2023-02-01")
    store.apply_batch([Consumed(0, 0, _ev("r1", "person.registered", dict(REG["payload"]), town="T1", day="2023-01-10")),
                       Consumed(0, 1, hazard)])
    as_of = date(2024, 9, 1)
    assert store.alerts(towns=["T1"])["total"] == 1 and store.alerts(towns=["T2"])["total"] == 0
    assert store.warnings(as_of, towns=["T1"])["total"] > 0
    moved = _ev("m1", "person.profile_changed", {"hardship": True}, town="T2", day="2024-01-01")
    store.apply_batch([Consumed(0, 2, moved)])
    assert store.alerts(towns=["T1"])["total"] == 0 and store.alerts(towns=["T2"])["total"] == 1
    assert store.warnings(as_of, towns=["T1"])["total"] == 0 and store.warnings(as_of, towns=["T2"])["total"] > 0
    assert store.alerts(towns=["T2"])["items"][0]["town"] == "T1"  # where the hazard was seen stays
    assert store.person_town("px") == "T2"


def _oracle_warnings(events: list[dict[str, Any]], as_of: date) -> list[dict[str, Any]]:
    projector, aggs, seen = Projector(RULES), {}, set()
    for e in events:
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        pid = e.get("person_id")
        agg, _ = projector.apply(aggs.get(pid) if pid else None, e)
        if pid:
            aggs[pid] = agg
    found = [w.to_dict() for a in aggs.values() if a.status == "active" for w in evaluate_warnings(a, as_of, RULES)]
    return sorted(found, key=lambda w: (w["since"], w["rule"], w["person_id"], w.get("need_id") or ""))


def test_warnings_match_domain_oracle(tmp_path, stream):
    store = make_store(tmp_path)
    for b in batches(to_records(stream), 64):
        store.apply_batch(b)
    as_of = date(2024, 9, 1)
    want = _oracle_warnings(stream, as_of)
    got = store.warnings(as_of, limit=10000)
    assert got["total"] == len(want) > 0
    assert got["items"] == want
    assert {w["rule"] for w in want} >= {"visit_overdue", "certificate_expiring", "need_unmet"}
    only = store.warnings(as_of, rule="need_unmet", limit=5, offset=2)
    assert only["items"] == [w for w in want if w["rule"] == "need_unmet"][2:7]
    town = TOWNS[0]
    in_town = store.warnings(as_of, towns=[town], limit=10000)["items"]
    pids = {r[0] for r in store.snapshot_rows()["persons"] if r[1] == town}
    assert in_town == [w for w in want if w["person_id"] in pids]
    one = want[0]["person_id"]
    assert store.warnings(as_of, person_id=one, limit=10000)["items"] == [w for w in want if w["person_id"] == one]


def test_two_writers_taking_turns_on_one_store(tmp_path):
    """Two workers (a rebalance) writing the same store: each unit of work reads the state as
    committed, so nothing either wrote is lost or counted twice."""
    a = make_store(tmp_path)
    b = SqlStore(f"sqlite:///{tmp_path / 'p.sqlite3'}", RULES)
    a.apply_batch([Consumed(0, 0, REG)])
    b.apply_batch([Consumed(0, 1, PAY)])
    a.apply_batch([Consumed(0, 2, REV)])
    assert a.counts("payment")["events"] == 0 and b.counts("payment")["events"] == 0
    b.apply_batch([Consumed(5, 0, _ev("pay9", "payment.disbursed", dict(PAY["payload"], period="2024-04")))])
    assert a.counts("payment")["events"] == 1 and a.offsets() == {0: 2, 5: 0}


def test_person_timeline_and_reset(tmp_path):
    store = make_store(tmp_path)
    store.apply_batch([Consumed(0, 0, REG), Consumed(0, 1, PAY), Consumed(0, 2, REV)])
    tl = store.person_timeline("px")
    assert [e["event_id"] for e in tl["events"]] == ["r1", "pay1", "rev1"]
    assert tl["person"]["grade"] == 1 and tl["person"]["hardship"] is True
    assert tl["person"]["registered_on"] == "2023-01-10"
    assert store.person_timeline("nobody") == {"person": None, "events": [], "alerts": []}
    store.migrate()  # idempotent
    store.reset()
    assert store.offsets() == {}
    assert all(rows == [] for rows in store.snapshot_rows().values())
    assert store.apply_batch([Consumed(0, 0, REG)]) == 1


def test_open_store_by_scheme(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'o.sqlite3'}", RULES)
    assert isinstance(store, SqlStore) and store.name == "sql"
    store.migrate()
    assert store.counts("posting") == {"events": 0, "persons": 0, "amount_fen": 0, "positions": 0}
    with pytest.raises(ValueError):
        open_store("mysql://x/y", RULES)
    ch = open_store("clickhouse://127.0.0.1:1/careledger_x", RULES)
    assert isinstance(ch, ClickHouseStore) and ch.database == "careledger_x"
    with pytest.raises(ValueError):
        open_store("clickhouse://127.0.0.1:1/bad-name;drop", RULES)


def test_stores_migrated_side_by_side_in_threads_each_get_the_full_schema(tmp_path):
    """Alembic's context is process-global: concurrent migrations must not cross connections."""
    stores = [SqlStore(f"sqlite:///{tmp_path / f's{i}.sqlite3'}", RULES) for i in range(6)]
    errors: list[BaseException] = []

    def migrate(store: SqlStore) -> None:
        try:
            store.migrate()
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise a warning
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    expected = set(inspect(make_store(tmp_path, "reference.sqlite3").engine).get_table_names())
    for store in stores:
        assert set(inspect(store.engine).get_table_names()) == expected



def test_the_counts_index_answers_what_the_database_answers(tmp_path):
    """Random contract queries, grouped counts, and updates after the index was built (reversals of
    earlier payments, erasure): the in-memory index and SQL agree exactly, merge or no merge."""
    import random

    import projections.sql.counts_index as ci

    rnd = random.Random(3)
    stream = Gen(seed=31, persons=60).stream(900)
    store = make_store(tmp_path)
    recs = to_records(stream)
    parts = batches(recs, 150)
    q = store.queries

    def check(n: int) -> None:
        for _ in range(n):
            kind = rnd.choice(list(KIND_KEYS))
            key = rnd.choice([None, *KIND_KEYS[kind]])
            town = rnd.choice([None, *TOWNS])
            lo = rnd.choice([None, date(2024, rnd.randint(1, 6), rnd.randint(1, 28))])
            hi = rnd.choice([None, date(2024, rnd.randint(6, 12), rnd.randint(1, 28))])
            assert q.counts(kind, key, lo, hi, town) == q.sql_counts(kind, key, lo, hi, town), (kind, key, town, lo, hi)
        for cols in (["town"], ["month", "key"], ["date"], []):
            assert q.grouped_counts("payment", cols) == q.sql_grouped_counts("payment", cols), cols

    for i, part in enumerate(parts):
        store.apply_batch(part)
        if i == 2:
            ci.MERGE_AT, saved = 50, ci.MERGE_AT  # force merges into the sorted base from here on
        check(30)
    ci.MERGE_AT = saved
    victim = next(e["person_id"] for e in stream if e["type"] == "payment.disbursed")
    store.forget(victim, "tomb-1")
    check(60)
    assert q.counts("payment")["events"] == q.sql_counts("payment")["events"] > 0
