"""SQL stores built through the projection runtime in tests: simulated input, a build with or
without resident state, and every row of a store to compare two builds."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from processors.domain.rules_config import default_rules
from processors.runtime.apply import ProjectionRuntime
from processors.runtime.records import RawRecord
from processors.runtime.resident import ResidentWriter
from producers.simulate.generator import SimConfig, generate
from projections.sql import tables as t
from projections.sql.store import SqlStore
from schemas.validation import partition_key
from tests.support.runtime import runtime_for

NOW = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
PARTITIONS = 4


def simulated_raws(n: int) -> list[RawRecord]:
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


def build(store: SqlStore, records: list[RawRecord], batch: int,
          resident_events: int | None) -> tuple[ProjectionRuntime[Any, Any, Any], Any]:
    """Apply ``records`` in batches of ``batch``; ``resident_events``: keep the state resident
    (``processors/runtime/resident.py``) up to that bound.  Returns the runtime and its writer."""
    runtime = runtime_for(store)
    if resident_events is not None:
        resident = store.binding().resident
        assert resident is not None
        runtime.writer = ResidentWriter(runtime.writer, resident(), resident_events)
    for i in range(0, len(records), batch):
        runtime.apply(records[i:i + batch])
    return runtime, runtime.writer


def store_rows(store: SqlStore, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, without outbox trace ids (new random ones for events without a
    trace) and the columns ``skip`` names."""
    leave = {"traceparent", *skip}
    with store.engine.connect() as conn:
        return {table.name: sorted(map(tuple, conn.execute(select(*(c for c in table.c if c.name not in leave)))
                                       .all()), key=repr)
                for table in t.metadata.sorted_tables}
