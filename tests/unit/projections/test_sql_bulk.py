"""The bulk loader (replay fast path) writes exactly what batch-by-batch ``apply_batch`` writes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections.sql import tables as t
from projections.sql.store import EventApplyError, SqlStore
from schemas.privacy import erase_event
from tests.unit.projections.gen import Gen, batches, check_counts, to_records

RULES = default_rules()


def make_store(tmp_path, name: str) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / name}", RULES)
    store.migrate()
    return store


def full_rows(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every table, positions and human columns included; the outbox in seq
    order without its timestamps (the wall clock of the write)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as conn:
        for table in (t.events, t.count_facts, t.persons, t.alerts, t.projection_offsets):
            rows = conn.execute(select(table)).all()
            if table is t.projection_offsets:  # not the writer token row of the aggregate cache
                rows = [r for r in rows if r.partition >= 0]
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
        ob = t.alert_outbox
        out["alert_outbox"] = [tuple(r) for r in conn.execute(select(ob.c.alert_id, ob.c.body).order_by(ob.c.seq))]
    return out


@pytest.fixture(scope="module")
def history() -> list[Consumed]:
    """A stream with everything the write path special-cases: reversals, duplicates and hazards
    (alerts), re-sent event_ids, poison records, a forgotten person, alerts handled by people."""
    events = Gen(seed=5, persons=60).stream(900)
    forgotten = next(e["person_id"] for e in events if e.get("person_id"))
    events = [erase_event(e, "tomb-1") if e.get("person_id") == forgotten else e for e in events]
    probe = SqlStore("sqlite://", RULES)
    probe.migrate()
    probe.apply_batch(to_records(events))
    raised = probe.alerts(limit=1000)["items"][:6]
    assert len(raised) == 6, "the generator should raise alerts"
    for i, alert in enumerate(raised):
        events.append({"event_id": f"h{i}", "type": "alert.handled", "version": 1,
                       "occurred_at": "2024-08-01T10:00:00+08:00", "person_id": alert["person_id"],
                       "town": alert["town"], "village": None, "source": "t",
                       "payload": {"alert_id": alert["alert_id"], "action": "resolve" if i % 2 else "acknowledge",
                                   "by": "caseworker-1"}})
    events += [dict(e) for e in events[100:130]]  # re-sent later: same event_id, new offsets
    records = to_records(events)
    records[50:50] = [Consumed(records[49].partition, 10_000 + i, None) for i in range(3)]  # poison
    return sorted(records, key=lambda r: (r.partition, r.offset))


def test_bulk_build_equals_batch_by_batch(tmp_path, history):
    reference = make_store(tmp_path, "batches.sqlite3")
    for b in batches(history, 37):
        reference.apply_batch(b)

    bulk = make_store(tmp_path, "bulk.sqlite3")
    loader = bulk.bulk_loader([0, 1, 2])
    assert loader is not None
    applied = sum(loader.add(b) for b in batches(history, 37))
    loader.finish()

    assert full_rows(bulk) == full_rows(reference)
    assert applied == len(full_rows(reference)["events"])
    assert any(r[-4] for r in full_rows(bulk)["alerts"]), "handled alerts keep who handled them"
    check_counts(bulk, [r.event for r in history if r.event is not None])


def test_a_build_larger_than_memory_writes_and_reads_back_aggregates(tmp_path, history):
    """Seven aggregates in memory for 60 persons: the others go to the persons table inside the
    transaction and come back when their person's next event does; the rows are the same."""
    reference = make_store(tmp_path, "batches.sqlite3")
    for b in batches(history, 37):
        reference.apply_batch(b)
    bulk = make_store(tmp_path, "bulk.sqlite3")
    loader = bulk.bulk_loader([0, 1, 2], max_persons=7)
    for b in batches(history, 37):
        loader.add(b)
        assert len(loader._aggs) <= 7 + 37 + 1  # the cap, plus one batch's persons, plus the forgotten one
    assert loader._evicted, "the cap was reached"
    loader.finish()
    assert full_rows(bulk) == full_rows(reference)


def test_the_store_continues_live_after_a_bulk_build(tmp_path, history):
    head, tail = history[: len(history) // 2], history[len(history) // 2:]
    reference = make_store(tmp_path, "ref.sqlite3")
    reference.apply_batch(history)
    bulk = make_store(tmp_path, "bulk.sqlite3")
    loader = bulk.bulk_loader([0, 1, 2])
    loader.add(head)
    loader.finish()
    assert bulk.apply_batch(head) == 0  # redelivered: its positions are stored
    bulk.apply_batch(tail)
    assert bulk.snapshot_rows() == reference.snapshot_rows()
    assert bulk.offsets() == reference.offsets()


def test_only_a_store_that_holds_nothing_of_the_partitions_is_bulk_loaded(tmp_path, history):
    store = make_store(tmp_path, "s.sqlite3")
    store.apply_batch([r for r in history if r.partition == 0][:10])
    assert store.bulk_loader([0]) is None
    assert store.bulk_loader([1, 2]) is None  # stored positions: no longer a build from empty


def test_a_failed_bulk_build_leaves_the_store_empty(tmp_path, history, monkeypatch):
    store = make_store(tmp_path, "s.sqlite3")
    loader = store.bulk_loader([0, 1, 2])
    loader.add(history[:200])

    def broken(agg, event):
        raise ValueError("projector bug")

    monkeypatch.setattr(store._projector, "apply", broken)
    with pytest.raises(EventApplyError):
        loader.add(history[200:])
    loader.abort()
    assert store.offsets() == {}
    assert all(rows == [] for rows in full_rows(store).values())
    assert store.bulk_loader([0, 1, 2]) is not None


def test_shards_built_apart_and_merged_equal_one_build(tmp_path, history):
    from projections.sql.shards import merge_shards, remove_shard, shard_url

    # two employers' postings, same town and day, on partitions of different shards: one fact row
    same_day = [{"event_id": f"post-{p}", "type": "job.posted", "version": 1, "occurred_at": "2024-05-06T09:00:00+08:00",
                 "person_id": None, "town": "T-shared", "village": None, "source": "t",
                 "payload": {"employer": f"employer-{p}", "positions": 2 + p}} for p in (0, 1)]
    history = history + [Consumed(p, 50_000, e) for p, e in enumerate(same_day)]
    reference = make_store(tmp_path, "one.sqlite3")
    reference.apply_batch(history)

    target_url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    groups = [[0, 2], [1]]
    shards = [shard_url(target_url, k) for k in range(len(groups))]
    for url, group in zip(shards, groups, strict=True):
        shard = SqlStore(url, RULES)
        shard.migrate()
        loader = shard.bulk_loader(group)
        for b in batches([r for r in history if r.partition in group], 50):
            loader.add(b)
        loader.finish()
        shard.close()
    target = SqlStore(target_url, RULES)
    target.migrate()
    merge_shards(target, shards)
    for url in shards:
        remove_shard(url)

    merged, want = full_rows(target), full_rows(reference)
    assert sorted(merged.pop("alert_outbox")) == sorted(want.pop("alert_outbox"))  # order: shard by shard
    assert merged == want
    assert not list(tmp_path.glob("target.sqlite3.shard*"))
    assert [r[5:] for r in merged["count_facts"] if r[2] == "T-shared"] == [(2, 0, 5)]  # summed on merge
