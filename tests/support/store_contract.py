"""The store contract: one abstract test suite every projection store runs.

A store is an adapter of the projection runtime (``processors.runtime``): whatever its backend, a
stream of records applied through the runtime - in one batch or many, redelivered, with events
re-sent, with poison, with a batch failing half-way - must leave the same read model, and its
positions must say exactly what it applied.  Subclasses say how to open a fresh store
(``make_store``); ``CountsContract`` adds CONTRACT.md §2's counts for the stores that answer them.

Runs against SQLite (tests/unit/projections/sql), PostgreSQL and ClickHouse (tests/integration)
and the example projection (tests/unit/projections/examples).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest

from processors.domain.counts import reference_counts
from processors.domain.model import Consumed
from processors.runtime.apply import commit_batch
from processors.runtime.contracts import Binding
from tests.unit.projections.gen import KIND_KEYS, Gen, batches, check_counts, to_records


class Crash(RuntimeError):
    """A simulated crash inside the batch's unit of work."""


class _CrashingWriter:
    """Wraps a writer; its next unit of work raises before (or after) writing, inside the transaction."""

    def __init__(self, writer: Any, after_write: bool) -> None:
        self.writer, self.name, self.after_write = writer, writer.name, after_write

    def offsets(self) -> dict[int, int]:
        return self.writer.offsets()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.writer.transaction() as uow:
            yield _CrashingUnit(uow, self.after_write)


class _CrashingUnit:
    def __init__(self, uow: Any, after_write: bool) -> None:
        self.uow, self.after_write = uow, after_write
        self.offsets, self.known, self.load = uow.offsets, uow.known, uow.load

    def write(self, changes: Any, positions: dict[int, int]) -> None:
        if self.after_write:
            self.uow.write(changes, positions)
        raise Crash("simulated crash before the commit")


def apply(store: Any, records: list[Consumed]) -> int:
    binding: Binding = store.binding()
    return commit_batch(binding.projection, binding.writer, records)[0]


def crash(store: Any, records: list[Consumed], after_write: bool) -> None:
    binding: Binding = store.binding()
    with pytest.raises(Crash):
        commit_batch(binding.projection, _CrashingWriter(binding.writer, after_write), records)


class StoreContract:
    """Effectively once, positions, resets: what every projection store guarantees."""

    persons = 60
    events = 600

    def make_store(self) -> Any:  # pragma: no cover - every subclass opens its own backend
        raise NotImplementedError

    @pytest.fixture
    def stream(self) -> list[dict[str, Any]]:
        return Gen(seed=11, persons=self.persons).stream(self.events)

    def rows(self, store: Any) -> dict[str, Any]:
        return store.snapshot_rows()

    def test_positions_say_what_was_applied(self, stream: list[dict[str, Any]]) -> None:
        store = self.make_store()
        recs = to_records(stream)
        for part in batches(recs, 97):
            apply(store, part)
        assert store.offsets() == {p: max(r.offset for r in recs if r.partition == p)
                                   for p in {r.partition for r in recs}}

    def test_redelivered_batches_change_nothing(self, stream: list[dict[str, Any]]) -> None:
        store = self.make_store()
        parts = batches(to_records(stream), 150)
        for part in parts[:3]:
            apply(store, part)
        before, positions = self.rows(store), store.offsets()
        for part in parts[:3]:
            assert apply(store, part) == 0
        assert apply(store, parts[1][10:40]) == 0
        assert self.rows(store) == before and store.offsets() == positions

    def test_a_resent_event_id_counts_once(self, stream: list[dict[str, Any]]) -> None:
        store = self.make_store()
        recs = to_records(stream)
        apply(store, recs)
        before = self.rows(store)
        resent = [Consumed(r.partition, r.offset + 10_000, dict(r.event)) for r in recs[:50]]  # type: ignore[arg-type]
        resent += [Consumed(resent[0].partition, 20_000, dict(resent[0].event))]  # type: ignore[arg-type]
        apply(store, resent)
        assert self.rows(store) == before
        assert max(store.offsets().values()) == 20_000

    def test_poison_only_advances_its_position(self) -> None:
        store = self.make_store()
        empty = self.rows(store)
        assert apply(store, [Consumed(2, 5, None)]) == 0
        assert store.offsets() == {2: 5} and self.rows(store) == empty

    def test_batches_failing_half_way_and_redeliveries_equal_one_clean_batch(
            self, stream: list[dict[str, Any]]) -> None:
        clean = self.make_store()
        recs = to_records(stream)
        apply(clean, recs)
        crashy = self.make_store()
        parts = batches(recs, 23)
        for i, part in enumerate(parts):
            if i % 5 == 2:  # fails inside the unit of work: before the write, or after it
                crash(crashy, part, after_write=i % 10 == 7)
            apply(crashy, part)
            if i % 4 == 1:  # committed, but the consumer did not ack it: redelivered
                apply(crashy, part)
            if i % 7 == 3:  # a redelivery overlapping the previous batch
                apply(crashy, parts[i - 1][5:] + part)
        assert self.rows(crashy) == self.rows(clean)
        assert crashy.offsets() == clean.offsets()
        assert crashy.fingerprint() == clean.fingerprint()

    def test_reset_empties_the_store_and_it_builds_again(self, stream: list[dict[str, Any]]) -> None:
        store = self.make_store()
        empty = self.rows(store)
        recs = to_records(stream[:100])
        apply(store, recs)
        store.migrate()  # idempotent
        store.reset()
        assert store.offsets() == {} and self.rows(store) == empty
        assert apply(store, recs) > 0


class CountsContract(StoreContract):
    """Stores that answer CONTRACT.md §2 ``/api/counts`` (and the grouped form)."""

    def test_counts_match_the_reference(self, stream: list[dict[str, Any]]) -> None:
        store = self.make_store()
        for part in batches(to_records(stream), 37):
            apply(store, part)
        assert check_counts(store, stream) > 300

    def test_grouped_counts_agree_with_counts(self, stream: list[dict[str, Any]]) -> None:
        store = self.make_store()
        apply(store, to_records(stream))
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

    def test_user_input_is_bound_not_spliced(self, stream: list[dict[str, Any]]) -> None:
        store = self.make_store()
        apply(store, to_records(stream[:100]))
        nasty = "x' OR '1'='1"
        assert store.counts("payment", key=nasty, town=nasty)["events"] == 0
