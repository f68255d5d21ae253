"""processors/runtime/resident.py: the resident state answers ``known`` and ``load`` while every
write still goes to the store; an error or the bound drops it, and the store answers again."""

from __future__ import annotations

from typing import Any

from processors.domain.model import Consumed
from processors.runtime.apply import ProjectionRuntime
from processors.runtime.decoding import RecordDecoder
from processors.runtime.resident import ResidentWriter
from tests.unit.processors.runtime.test_apply import CountByType, MemoryStore, raw, visit


class CountInPlace(CountByType):
    """The same projection, folding into the state it is given (as the main read model does)."""

    def fold(self, state: dict[str, int], records: list[Consumed]) -> tuple[dict[str, int], list[str]]:
        totals, ids = super().fold(state, records)
        state.update(totals)
        return state, ids


def run(batches: list[list[Any]], max_events: int | None) -> tuple[MemoryStore, Any, list[int]]:
    store = MemoryStore()
    writer: Any = store if max_events is None else ResidentWriter(store, {}, max_events)
    dead: list[int] = []
    decoder = RecordDecoder(lambda r, reasons: dead.append(r.offset), lambda create: None)
    runtime: ProjectionRuntime[Any, Any, Any] = ProjectionRuntime(CountInPlace(), writer, decoder,
                                                                  sleep=lambda _s: None)
    for batch in batches:
        runtime.apply(batch)
    return store, writer, dead


def test_known_and_load_come_from_memory_and_every_write_reaches_the_store() -> None:
    batches = [[raw(0, visit("a")), raw(1, visit("b"))], [raw(2, visit("a")), raw(3, visit("c"))]]
    store, writer, _ = run(batches, 100)
    assert writer.resident and writer.state == {"visit.completed": 3} and writer.events == 3
    assert store.totals == {"visit.completed": 3} and store.ids == {"a", "b", "c"} and store.positions == {0: 3}
    assert writer.offsets() == store.offsets()


def test_an_error_in_a_batch_drops_the_state_and_the_store_answers_the_retry() -> None:
    batches = [[raw(0, visit("a"))], [raw(1, visit("b")), raw(2, visit("x", "boom")), raw(3, visit("a"))],
               [raw(4, visit("c"))]]
    store, writer, dead = run(batches, 100)
    assert not writer.resident and writer.state is None
    plain, _, plain_dead = run(batches, None)
    assert (store.totals, store.ids, store.positions) == (plain.totals, plain.ids, plain.positions)
    assert dead == plain_dead == [2]
    assert store.totals == {"visit.completed": 3}


def test_past_the_bound_the_state_is_dropped() -> None:
    batches = [[raw(i, visit(f"e{i}"))] for i in range(5)]
    store, writer, _ = run(batches, 2)
    assert not writer.resident and writer.events == 3  # dropped after the batch that passed the bound
    assert store.totals == {"visit.completed": 5}
