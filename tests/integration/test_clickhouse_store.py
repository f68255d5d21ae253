"""ClickHouseStore on the real ClickHouse server (Debian's 18.16 in the test stack)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from processors.domain.counts import reference_counts
from processors.domain.model import Consumed
from projections import open_store
from projections.clickhouse.store import ClickHouseStore
from tests.unit.projections.gen import TOWNS, Gen, batches, check_counts, to_records

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return Gen(seed=31, persons=80).stream(800)


def ch_store(url: str, **kw: Any) -> ClickHouseStore:
    store = open_store(url, None, **kw)
    assert isinstance(store, ClickHouseStore)
    store.migrate()
    store.migrate()  # idempotent
    return store


def test_clickhouse_counts_match_reference(clickhouse_url, stream):
    store = ch_store(clickhouse_url)
    recs = to_records(stream)
    applied = sum(store.apply_batch(b) for b in batches(recs, 97))
    assert applied == len({e["event_id"] for e in stream}) + _resent_across_batches(recs, 97)
    assert check_counts(store, stream) > 300
    for kind in ("payment", "service", "posting", "person"):
        rows = store.grouped_counts(kind, ["town", "month"])
        assert sum(r["events"] for r in rows) == store.counts(kind)["events"]
        for r in rows:
            want = reference_counts(stream, kind, None, f"{r['month']}-01", f"{r['month']}-31", r["town"])
            assert {k: r[k] for k in want} == want, r
    by_date = store.grouped_counts("visit", ["date", "key"], town=TOWNS[0], date_from=date(2024, 4, 1))
    for r in by_date[:20]:
        d = date.fromisoformat(r["date"])
        want = reference_counts(stream, "visit", r["key"], d, d, TOWNS[0])
        assert {k: r[k] for k in want} == want
    assert store.offsets() == {p: max(r.offset for r in recs if r.partition == p) for p in {r.partition for r in recs}}
    store.close()


def _resent_across_batches(recs: list[Consumed], size: int) -> int:
    """Re-sent copies in a later batch are inserted again (and collapsed by the engine)."""
    seen: set[str] = set()
    extra = 0
    for b in batches(recs, size):
        ids = {r.event["event_id"] for r in b if r.event is not None}
        extra += len(ids & seen)
        seen |= ids
    return extra


def test_clickhouse_duplicate_inserts_never_count(clickhouse_url, stream, monkeypatch):
    clean = ch_store(clickhouse_url, projection="clean")
    recs = to_records(stream)
    clean.apply_batch(recs)

    crashy = ClickHouseStore(clickhouse_url.rsplit("/", 1)[0] + "/" + clickhouse_url.rsplit("/", 1)[1] + "_b",
                             projection="crashy")
    crashy.migrate()
    real = crashy._execute
    state = {"fail": False}

    def failing(query: str, params: Any = None, **kw: Any) -> Any:
        if state["fail"] and query.startswith("INSERT INTO consumer_offsets"):
            state["fail"] = False
            raise ConnectionError("simulated crash between the events insert and the offsets insert")
        return real(query, params, **kw)

    monkeypatch.setattr(crashy, "_execute", failing)
    for i, b in enumerate(batches(recs, 61)):
        if i % 2 == 0:
            state["fail"] = True
            with pytest.raises(ConnectionError):
                crashy.apply_batch(b)
        crashy.apply_batch(b)  # redelivered: the same rows are inserted again
        crashy.apply_batch(b)  # and once more after the offsets were stored: skipped
    # a producer re-send at new offsets, and a poison record
    crashy.apply_batch([Consumed(r.partition, r.offset + 100_000, r.event) for r in recs[:40]]
                       + [Consumed(0, 200_000, None)])
    raw_rows = crashy._execute("SELECT count() FROM events")[0][0]
    assert raw_rows > len(recs)  # the copies are really there (until a merge)
    assert crashy.offsets()[0] == 200_000
    check_counts(crashy, stream)
    assert crashy.snapshot_rows() == clean.snapshot_rows()
    assert crashy.event_count() == len({e["event_id"] for e in stream})
    crashy._execute("OPTIMIZE TABLE events FINAL")
    check_counts(crashy, stream)
    assert crashy.snapshot_rows() == clean.snapshot_rows()
    crashy.reset()
    assert crashy.offsets() == {} and crashy.event_count() == 0
    crashy.close()
    clean.close()


def test_clickhouse_input_is_bound(clickhouse_url, stream):
    store = ch_store(clickhouse_url)
    store.apply_batch(to_records(stream[:200]))
    nasty = "x' OR '1'='1"
    assert store.counts("payment", key=nasty, town=nasty)["events"] == 0
    assert store.grouped_counts("payment", ["key"], town=nasty) == []
    store.close()
