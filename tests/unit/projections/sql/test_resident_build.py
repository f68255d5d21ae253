"""A build that keeps its state resident (processors/runtime/resident.py) writes the same store as
one that loads its state from the store batch by batch - and does not read it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from processors.runtime.records import RawRecord
from tests.support.sql_builds import build, simulated_raws, store_at, store_rows


@pytest.fixture(scope="module")
def records() -> list[RawRecord]:
    return simulated_raws(3000)


def test_a_resident_build_writes_the_same_store(tmp_path: Path, records: list[RawRecord]) -> None:
    loaded, resident = store_at(tmp_path, "loaded"), store_at(tmp_path, "resident")
    plain_rt, _ = build(loaded, records, 250, None)
    resident_rt, writer = build(resident, records, 250, 1_000_000)
    assert writer.resident  # kept to the end
    expected = store_rows(loaded)
    assert sum(len(rows) for rows in expected.values()) > 3000  # not an empty comparison
    assert expected["alerts"] and expected["warnings"] and expected["ledger"]
    assert store_rows(resident) == expected
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
    assert store_rows(bounded) == store_rows(loaded)
