"""SqlStore on SQLite files: counts against the oracle, effectively-once, alerts, warnings."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from processors.domain.counts import reference_counts
from processors.domain.model import Consumed
from processors.domain.reducer import Projector
from processors.domain.rules_config import default_rules
from processors.domain.warnings import evaluate_warnings
from projections import open_store
from projections.sql.store import EventApplyError, SqlStore
from tests.unit.projections.gen import (
    KIND_KEYS,
    TOWNS,
    Gen,
    batches,
    check_counts,
    to_records,
)

RULES = default_rules()
def make_store(tmp_path, name: str = "p.sqlite3", **kw: Any) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / name}", RULES, **kw)
    store.migrate()
    return store


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return Gen(seed=11, persons=70).stream(700)


def test_counts_match_reference(tmp_path, stream):
    store = make_store(tmp_path)
    recs = to_records(stream)
    applied = sum(store.apply_batch(b) for b in batches(recs, 37))
    assert applied == len({e["event_id"] for e in stream})
    assert check_counts(store, stream) > 350
    assert store.offsets() == {p: max(r.offset for r in recs if r.partition == p) for p in {r.partition for r in recs}}


def test_grouped_counts_agree_with_counts(tmp_path, stream):
    store = make_store(tmp_path)
    for b in batches(to_records(stream), 100):
        store.apply_batch(b)
    for kind in KIND_KEYS:
        rows = store.grouped_counts(kind, ["town", "month"])
        assert sum(r["events"] for r in rows) == store.counts(kind)["events"]
        for r in rows:
            month = r["month"]
            want = reference_counts(stream, kind, None, f"{month}-01", f"{month}-31", r["town"])
            assert {k: r[k] for k in want} == want
    by_key = store.grouped_counts("payment", ["key"], date_from=date(2024, 3, 1))
    assert [r["key"] for r in by_key] == sorted(r["key"] for r in by_key)
    for r in by_key:
        assert store.counts("payment", key=r["key"], date_from=date(2024, 3, 1))["amount_fen"] == r["amount_fen"]
    assert store.grouped_counts("visit", ["date"], date_from=date(2030, 1, 1)) == []
    with pytest.raises(ValueError):
        store.grouped_counts("visit", ["person_id"])
    with pytest.raises(ValueError):
        store.counts("nonsense")


def test_redelivered_batch_changes_nothing(tmp_path, stream):
    store = make_store(tmp_path)
    parts = batches(to_records(stream), 150)
    for b in parts[:3]:
        store.apply_batch(b)
    before, offsets, pending = store.snapshot_rows(), store.offsets(), len(store.outbox_pending(100000))
    for b in parts[:3]:
        assert store.apply_batch(b) == 0
    assert store.apply_batch(parts[1][10:40]) == 0
    assert store.snapshot_rows() == before
    assert store.offsets() == offsets
    assert len(store.outbox_pending(100000)) == pending


def test_resent_event_id_at_new_offset_changes_nothing(tmp_path, stream):
    store = make_store(tmp_path)
    recs = to_records(stream)
    store.apply_batch(recs)
    before = store.snapshot_rows()
    resent = [Consumed(r.partition, r.offset + 10_000, dict(r.event)) for r in recs[:50]]  # type: ignore[arg-type]
    # and the same event twice inside one batch
    resent += [Consumed(resent[0].partition, 20_000, dict(resent[0].event))]  # type: ignore[arg-type]
    assert store.apply_batch(resent) == 0
    assert store.snapshot_rows() == before
    assert max(store.offsets().values()) == 20_000


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
    assert [r for r in store.snapshot_rows()["count_facts"] if r[0] == "payment"] == []  # zero rows deleted
    assert store.counts("person")["persons"] == 1


def test_poison_record_only_advances_offset(tmp_path):
    store = make_store(tmp_path)
    assert store.apply_batch([Consumed(2, 5, None)]) == 0
    assert store.offsets() == {2: 5}
    assert store.snapshot_rows() == {"events": [], "count_facts": [], "persons": [], "alerts": []}
    assert store.apply_batch([Consumed(2, 6, REG), Consumed(2, 7, None), Consumed(1, 0, None)]) == 1
    assert store.offsets() == {1: 0, 2: 7}


def test_projector_failure_rolls_back_and_names_the_record(tmp_path):
    store = make_store(tmp_path)
    bad = _ev("bad", "payment.disbursed", {"amount_fen": 1})  # no program: the projector raises
    with pytest.raises(EventApplyError) as info:
        store.apply_batch([Consumed(0, 0, REG), Consumed(0, 1, bad)])
    assert (info.value.partition, info.value.offset, info.value.event_id) == (0, 1, "bad")
    assert store.offsets() == {}
    assert store.snapshot_rows()["events"] == []
    assert store.apply_batch([Consumed(0, 0, REG)]) == 1  # the cache was dropped: state is clean
    assert store.person_timeline("px")["person"]["status"] == "active"


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
    assert store.alerts(towns=["T2"])["total"] == 2
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


def test_snapshot_same_for_one_batch_and_crashy_small_batches(tmp_path, stream, monkeypatch):
    clean = make_store(tmp_path, "clean.sqlite3")
    recs = to_records(stream)
    clean.apply_batch(recs)

    crashy = make_store(tmp_path, "crashy.sqlite3")
    parts = batches(recs, 23)
    real_bulk = crashy._bulk
    crashes = {"left": 0}

    def failing_bulk(conn, name, rows):
        if name == "offsets" and crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("simulated crash before commit")
        return real_bulk(conn, name, rows)

    monkeypatch.setattr(crashy, "_bulk", failing_bulk)
    for i, b in enumerate(parts):
        if i % 5 == 2:  # crash inside the transaction, after every other write: nothing sticks
            crashes["left"] = 1
            with pytest.raises(RuntimeError):
                crashy.apply_batch(b)
        crashy.apply_batch(b)
        if i % 4 == 1:  # committed, but the consumer did not commit its offset: redelivered
            crashy.apply_batch(b)
        if i % 7 == 3:  # redelivery overlapping the previous batch
            crashy.apply_batch(parts[i - 1][5:] + b)

    assert crashy.snapshot_rows() == clean.snapshot_rows()
    assert crashy.offsets() == clean.offsets()
    check_counts(crashy, stream)
    # a fresh store object (process restart, empty cache) continues identically
    restarted = SqlStore(f"sqlite:///{tmp_path / 'crashy.sqlite3'}", RULES)
    extra = Gen(seed=99, persons=70).stream(100)
    for e in extra:
        e["event_id"] = "x" + e["event_id"]
    tail = to_records(extra, start_offset=10_000)
    restarted.apply_batch(tail)
    clean.apply_batch(tail)
    assert restarted.snapshot_rows() == clean.snapshot_rows()


def test_cache_dropped_when_another_writer_moves_offsets(tmp_path):
    a = make_store(tmp_path)
    b = SqlStore(f"sqlite:///{tmp_path / 'p.sqlite3'}", RULES)
    a.apply_batch([Consumed(0, 0, REG)])
    b.apply_batch([Consumed(0, 1, PAY)])  # another worker took the partition for a while
    a.apply_batch([Consumed(0, 2, REV)])  # a must not use its stale aggregate of px
    assert a.counts("payment")["events"] == 0
    assert a.person_timeline("px")["person"]["state"] == b.person_timeline("px")["person"]["state"]


def test_cache_dropped_when_another_writer_used_another_partition(tmp_path):
    # e.g. after the topic got more partitions, a person's events move to a partition a never saw
    a = make_store(tmp_path)
    b = SqlStore(f"sqlite:///{tmp_path / 'p.sqlite3'}", RULES)
    a.apply_batch([Consumed(0, 0, REG)])
    b.apply_batch([Consumed(5, 0, PAY)])
    a.apply_batch([Consumed(0, 1, REV)])
    assert a.counts("payment")["events"] == 0
    assert a.offsets() == {0: 1, 5: 0}


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
    assert store.snapshot_rows() == {"events": [], "count_facts": [], "persons": [], "alerts": []}
    assert store.apply_batch([Consumed(0, 0, REG)]) == 1


def test_open_store_by_scheme(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'o.sqlite3'}", RULES)
    assert isinstance(store, SqlStore) and store.name == "sql"
    store.migrate()
    assert store.counts("posting") == {"events": 0, "persons": 0, "amount_fen": 0, "positions": 0}
    with pytest.raises(ValueError):
        open_store("mysql://x/y", RULES)
    from projections.clickhouse.store import ClickHouseStore

    ch = open_store("clickhouse://127.0.0.1:1/careledger_x", RULES)
    assert isinstance(ch, ClickHouseStore) and ch.database == "careledger_x"
    with pytest.raises(ValueError):
        open_store("clickhouse://127.0.0.1:1/bad-name;drop", RULES)


def test_user_input_is_bound_not_spliced(tmp_path, stream):
    store = make_store(tmp_path)
    store.apply_batch(to_records(stream[:100]))
    nasty = "x' OR '1'='1"
    assert store.counts("payment", key=nasty, town=nasty)["events"] == 0
    assert store.alerts(rule=nasty, person_id=nasty, towns=[nasty])["total"] == 0
    assert store.warnings(date(2024, 9, 1), person_id=nasty)["total"] == 0


def test_stores_migrated_side_by_side_in_threads_each_get_the_full_schema(tmp_path):
    """Alembic's context is process-global: concurrent migrations must not cross connections."""
    import threading

    from sqlalchemy import inspect

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
