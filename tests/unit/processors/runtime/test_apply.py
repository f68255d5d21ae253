"""The projection runtime's commit order (processors/runtime/apply.py) on a store kept in memory:
positions, de-duplication, a transient error retried whole, a deterministic one bisected down to
its event (dead-lettered with the error), after-commit hooks only after a commit."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from processors.domain.model import Consumed
from processors.runtime.apply import ProjectionRuntime
from processors.runtime.contracts import EventKey
from processors.runtime.decoding import RecordDecoder
from processors.runtime.records import RawRecord
from tests.unit.schemas.examples import event as example_event


class CountByType:
    """A projection: events per type.  An event whose ``source`` is ``boom`` makes the fold fail."""

    def plan(self, events: list[dict[str, Any]]) -> set[str]:
        return {e["type"] for e in events}

    def fold(self, state: dict[str, int], records: list[Consumed]) -> tuple[dict[str, int], list[str]]:
        out = dict(state)
        for rec in records:
            assert rec.event is not None
            if rec.event["source"] == "boom":
                raise ValueError(f"cannot fold {rec.event['event_id']}")
            out[rec.event["type"]] = out.get(rec.event["type"], 0) + 1
        return out, [rec.event["event_id"] for rec in records if rec.event is not None]

    def applied(self, changes: tuple[dict[str, int], list[str]]) -> int:
        return len(changes[1])


class MemoryStore:
    """A Writer whose unit of work commits only when the ``with`` block ends without an error."""

    name = "memory"

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.ids: set[str] = set()
        self.totals: dict[str, int] = {}
        self.fail_transiently = 0
        self.commits = 0
        self.log: list[str] = []

    def offsets(self) -> dict[int, int]:
        return dict(self.positions)

    @contextmanager
    def transaction(self) -> Iterator[MemoryUnit]:
        if self.fail_transiently:
            self.fail_transiently -= 1
            raise OperationalError("BEGIN", {}, ConnectionError("server closed the connection"))
        unit = MemoryUnit(self)
        yield unit
        self.positions.update(unit.positions)
        self.ids |= unit.ids
        self.totals = unit.totals
        self.commits += 1
        self.log.append("commit")


class MemoryUnit:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.positions: dict[int, int] = {}
        self.ids: set[str] = set()
        self.totals = dict(store.totals)

    def offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self.store.positions[p] for p in partitions if p in self.store.positions}

    def known(self, keys: Sequence[EventKey]) -> set[EventKey]:
        return {key for key in keys if key[0] in self.store.ids}

    def load(self, plan: set[str]) -> dict[str, int]:
        return {t: n for t, n in self.totals.items() if t in plan}

    def write(self, changes: tuple[dict[str, int], list[str]], positions: dict[int, int]) -> None:
        self.totals.update(changes[0])
        self.ids.update(changes[1])
        self.positions = positions
        self.store.log.append("write")


def raw(offset: int, event: dict[str, Any], partition: int = 0) -> RawRecord:
    return RawRecord(partition, offset, None, json.dumps(event, ensure_ascii=False).encode())


def visit(eid: str, source: str = "test") -> dict[str, Any]:
    return {**example_event("visit.completed"), "event_id": eid, "source": source}


@pytest.fixture
def runtime() -> tuple[ProjectionRuntime[Any, Any, Any], MemoryStore, list[tuple[int, list[str]]]]:
    store = MemoryStore()
    dead: list[tuple[int, list[str]]] = []
    decoder = RecordDecoder(lambda r, reasons: dead.append((r.offset, reasons)), lambda create: None)
    rt: ProjectionRuntime[Any, Any, Any] = ProjectionRuntime(
        CountByType(), store, decoder, sleep=lambda _s: None, after_commit=[lambda n: store.log.append(f"after {n}")])
    return rt, store, dead


def test_positions_and_duplicates(runtime: Any) -> None:
    rt, store, dead = runtime
    rt.apply([raw(0, visit("a")), raw(1, visit("b")), raw(2, visit("a"))])
    assert store.totals == {"visit.completed": 2} and store.positions == {0: 2}
    rt.apply([raw(1, visit("b")), raw(2, visit("a")), raw(3, visit("b")), raw(4, visit("c"))])  # redelivered
    assert store.totals == {"visit.completed": 3} and store.positions == {0: 4}
    assert rt.stats.duplicates == 2 and dead == []
    assert store.log[:3] == ["write", "commit", "after 2"]  # hooks run after the commit


def test_a_transient_error_is_retried_whole(runtime: Any) -> None:
    rt, store, _dead = runtime
    store.fail_transiently = 3
    assert rt.apply([raw(0, visit("a")), raw(1, visit("b"))]) == 2
    assert rt.stats.retries == 3 and store.commits == 1 and store.positions == {0: 1}


def test_a_deterministic_error_is_bisected_to_its_event(runtime: Any) -> None:
    rt, store, dead = runtime
    batch = [raw(i, visit(f"e{i}", "boom" if i == 5 else "test")) for i in range(8)]
    rt.apply(batch)
    assert store.totals == {"visit.completed": 7} and store.positions == {0: 7}
    assert [offset for offset, _r in dead] == [5]
    assert dead[0][1] == ["processing failed: ValueError: cannot fold e5"]


def test_poison_only_moves_its_position(runtime: Any) -> None:
    rt, store, dead = runtime
    rt.apply([raw(0, visit("a")), RawRecord(0, 1, None, b"{not json"), raw(2, visit("c"))])
    assert store.totals == {"visit.completed": 2} and store.positions == {0: 2}
    assert [offset for offset, _r in dead] == [1] and "JSON" in dead[0][1][0]


def test_the_log_line_of_a_dead_lettered_event_names_its_trace(runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    rt, _store, dead = runtime
    traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    boom = RawRecord(0, 1, None, json.dumps(visit("e1", "boom")).encode(), [("traceparent", traced.encode())])
    with caplog.at_level("ERROR", logger="careledger.processor"):
        rt.apply([raw(0, visit("e0")), boom])
    [line] = [r for r in caplog.records if "dead-lettering" in r.getMessage()]
    assert [offset for offset, _r in dead] == [1]
    assert line.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # type: ignore[attr-defined]
