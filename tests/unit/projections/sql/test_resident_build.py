"""A build that keeps its state resident (processors/runtime/resident.py) writes the same store as
one that loads its state from the store batch by batch - and does not read it back."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from processors.domain.rules_config import default_rules
from processors.runtime.apply import ProjectionRuntime
from processors.runtime.decoding import RecordDecoder
from processors.runtime.records import RawRecord
from processors.runtime.resident import ResidentWriter
from producers.simulate.generator import SimConfig, generate
from projections.sql import tables as t
from projections.sql.store import SqlStore
from schemas.validation import partition_key

NOW = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
PARTITIONS = 4


def raws(n: int) -> list[RawRecord]:
    """``n`` simulator events on 4 partitions, every 50th re-sent later (de-duplication), one poison."""
    events = list(itertools.islice(generate(SimConfig(persons=max(30, n // 9), seed=7)), n))
    events += events[::50]
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    out = []
    for i, ev in enumerate(events):
        key = partition_key(ev)
        partition = sum(key.encode()) % PARTITIONS
        value = b"{not json" if i == n // 2 else json.dumps(ev, ensure_ascii=False).encode()
        out.append(RawRecord(partition, offsets[partition], key.encode(), value))
        offsets[partition] += 1
    return out


def store_at(tmp_path: Path, name: str, url: str | None = None) -> SqlStore:
    store = SqlStore(url or f"sqlite:///{tmp_path / name}.sqlite3", default_rules(), clock=lambda: NOW)
    store.migrate()
    return store


def build(store: SqlStore, records: list[RawRecord], batch: int, resident_events: int | None) -> Any:
    binding = store.binding()
    writer: Any = binding.writer
    if resident_events is not None:
        assert binding.resident is not None
        writer = ResidentWriter(writer, binding.resident(), resident_events)
    decoder = RecordDecoder(lambda raw, reasons: None, lambda create: None)
    runtime: ProjectionRuntime[Any, Any, Any] = ProjectionRuntime(binding.projection, writer, decoder,
                                                                  sleep=lambda _s: None)
    for i in range(0, len(records), batch):
        runtime.apply(records[i:i + batch])
    return runtime, writer


def contents(store: SqlStore, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, without outbox trace ids (new random ones for events without a
    trace) and the columns ``skip`` names."""
    leave = {"traceparent", *skip}
    with store.engine.connect() as conn:
        return {table.name: sorted(map(tuple, conn.execute(select(*(c for c in table.c if c.name not in leave)))
                                       .all()), key=repr)
                for table in t.metadata.sorted_tables}


@pytest.fixture(scope="module")
def records() -> list[RawRecord]:
    return raws(3000)


def test_a_resident_build_writes_the_same_store(tmp_path: Path, records: list[RawRecord]) -> None:
    loaded, resident = store_at(tmp_path, "loaded"), store_at(tmp_path, "resident")
    plain_rt, _ = build(loaded, records, 250, None)
    resident_rt, writer = build(resident, records, 250, 1_000_000)
    assert writer.resident  # kept to the end
    expected = contents(loaded)
    assert sum(len(rows) for rows in expected.values()) > 3000  # not an empty comparison
    assert expected["alerts"] and expected["warnings"] and expected["ledger"]
    assert contents(resident) == expected
    assert (resident_rt.stats.applied, resident_rt.stats.duplicates) == (plain_rt.stats.applied, plain_rt.stats.duplicates)
    assert resident_rt.stats.duplicates >= 3000 // 50 - 1  # the original of one re-sent event is the poison


def test_a_resident_build_does_not_read_its_state_back(tmp_path: Path, records: list[RawRecord]) -> None:
    store = store_at(tmp_path, "quiet")
    reads: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def remember(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "projection_offsets" not in statement:
            reads.append(statement)

    build(store, records[:1000], 250, 1_000_000)
    assert [s for s in reads if "FROM ledger" in s or "FROM persons" in s or "FROM alerts" in s] == []


def test_past_its_bound_the_store_answers_again_and_the_result_is_the_same(tmp_path: Path,
                                                                             records: list[RawRecord]) -> None:
    loaded, bounded = store_at(tmp_path, "loaded"), store_at(tmp_path, "bounded")
    build(loaded, records, 250, None)
    _rt, writer = build(bounded, records, 250, 1000)
    assert not writer.resident and writer.events > 1000
    assert contents(bounded) == contents(loaded)
