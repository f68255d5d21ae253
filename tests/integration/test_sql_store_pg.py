"""SqlStore on a real PostgreSQL (psycopg 3): same answers and rows as on SQLite."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest

from processors.domain.counts import reference_counts
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections import open_store
from projections.sql.store import SqlStore
from tests.unit.projections.gen import TOWNS, Gen, batches, check_counts, to_records
from tests.unit.projections.replay.test_hand_over import check_hand_over
from tests.unit.projections.sql.test_migrations import check_person_stamps_upgrade, schema_differences

pytestmark = pytest.mark.integration
RULES = default_rules()


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return Gen(seed=23, persons=80).stream(800)


def pg_store(url: str) -> SqlStore:
    store = open_store(url, RULES)
    assert isinstance(store, SqlStore) and store.dialect == "postgresql"
    store.migrate()
    store.migrate()  # idempotent
    return store


def settled(value: Any) -> Any:
    """``value`` without ``raised_at``: the wall-clock moment each store first saw an alert differs
    between two stores built one after the other; every other field must match."""
    if isinstance(value, dict):
        if "alert_id" in value and "rule" in value:
            assert value.get("raised_at"), value
        return {k: settled(v) for k, v in value.items() if k != "raised_at"}
    if isinstance(value, list):
        return [settled(v) for v in value]
    return value


def test_pg_counts_and_rows_match_sqlite(pg_url, tmp_path, stream):
    pg = pg_store(pg_url)
    lite = SqlStore(f"sqlite:///{tmp_path / 'ref.sqlite3'}", RULES)
    lite.migrate()
    recs = to_records(stream)
    for b in batches(recs, 91):
        pg.apply_batch(b)
    lite.apply_batch(recs)
    assert check_counts(pg, stream) > 300
    for kind in ("payment", "visit", "posting"):
        rows = pg.grouped_counts(kind, ["town", "month"])
        assert rows == lite.grouped_counts(kind, ["town", "month"])
        for r in rows:
            want = reference_counts(stream, kind, None, f"{r['month']}-01", f"{r['month']}-31", r["town"])
            assert {k: r[k] for k in want} == want
    assert pg.snapshot_rows() == lite.snapshot_rows()
    assert pg.offsets() == lite.offsets()
    assert settled(pg.alerts(limit=10000)) == settled(lite.alerts(limit=10000))
    as_of = date(2024, 9, 1)
    assert pg.warnings(as_of, limit=10000) == lite.warnings(as_of, limit=10000)
    assert pg.warnings(as_of, towns=[TOWNS[1]])["total"] > 0
    pid = stream[0]["person_id"]
    assert settled(pg.person_timeline(pid)) == settled(lite.person_timeline(pid))
    pg.close()


def test_pg_redelivery_resend_and_poison(pg_url, stream):
    pg = pg_store(pg_url)
    parts = batches(to_records(stream), 200)
    pg.apply_batch(parts[0])
    before = pg.snapshot_rows()
    assert pg.apply_batch(parts[0]) == 0
    resent = [Consumed(r.partition, r.offset + 50_000, r.event) for r in parts[0][:20]]
    assert pg.apply_batch(resent + [Consumed(0, 60_000, None)]) == 0
    assert pg.snapshot_rows() == before
    assert pg.offsets()[0] == 60_000
    pending = pg.outbox_pending(5)
    assert pending and pg.mark_sent([p["seq"] for p in pending]) == len(pending)
    alert_id = pg.alerts(limit=1)["items"][0]["alert_id"]
    acked = pg.acknowledge_alert(alert_id, "w1", "2024-09-01T08:00:00+08:00", resolve=True)
    assert acked["status"] == "resolved" and acked["resolved_by"] == "w1"
    pg.reset()
    assert pg.offsets() == {} and pg.snapshot_rows()["ledger"] == []
    pg.close()


def test_pg_two_writers_apply_a_batch_once(pg_url, stream):
    first = pg_store(pg_url)
    second = SqlStore(pg_url, RULES)
    recs = to_records(stream[:300])
    results: list[int] = []
    errors: list[BaseException] = []

    def run(store: SqlStore) -> None:
        try:
            results.append(store.apply_batch(recs))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (first, second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert sorted(results) == [0, len({e["event_id"] for e in stream[:300]})]
    assert first.counts("payment") == reference_counts(stream[:300], "payment")
    first.close()
    second.close()


def test_pg_hand_over_continues_the_old_outbox_seqs(stack):
    """The rebuilt store takes over the old outbox with its seqs; the column's sequence then
    continues above the floor (explicit seqs do not move a PostgreSQL sequence by themselves)."""
    check_hand_over(pg_store(stack.fresh_pg_url()), pg_store(stack.fresh_pg_url()))


def test_pg_migrations_build_the_tables_of_the_code(stack):
    assert schema_differences(stack.fresh_pg_url()) == []


def test_pg_person_rows_of_revision_4_hold_their_shared_stamp_once_after_the_upgrade(stack):
    check_person_stamps_upgrade(stack.fresh_pg_url())
