"""Bulk build of an empty SQL store: the replay fast path's writer.

``SqlStore.apply_batch`` pays, per batch, for reading the stored offsets, checking every event_id
against the events table, loading and re-serialising the touched persons' aggregates and upserting
their rows.  A store that starts empty needs none of that: the loader keeps the offsets, the seen
event_ids and every person's aggregate in memory, streams event rows and additive fact upserts into
**one transaction**, and writes persons, alerts and offsets once at the end.  Atomic like a batch:
a crash (or :meth:`abort`) before :meth:`finish` commits leaves the store empty, so a build can
always start again, and the effectively-once guarantee is the same as the per-batch path's.

The per-record semantics are ``SqlStore._apply``'s, step for step, and the projection loop is the
same function (``project_records``), so the rows written are identical to a per-batch replay's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from processors.domain.model import Consumed
from projections.sql import tables as t
from projections.sql.store import _now, _person_row, alert_action_values, project_records
from projections.store import fresh_records

if TYPE_CHECKING:
    from projections.sql.store import SqlStore

def can_bulk_load(store: SqlStore, partitions: list[int]) -> bool:
    """True when ``store`` holds nothing of ``partitions`` under its projection name: no stored
    positions at all, and no event rows from those partitions (parallel workers of one build
    write disjoint partitions of the same store)."""
    if store.offsets():
        return False
    ev = t.events
    with store.engine.connect() as conn:
        return conn.execute(select(ev.c.event_id).where(ev.c.partition.in_(partitions)).limit(1)).first() is None


def _fact_order(key: Any) -> tuple[str, ...]:
    """The row's primary key, as ``SqlStore._write_facts`` writes it."""
    return (key.kind, key.key or "", key.town or "", key.date, key.person_id or "")


MAX_PERSONS_IN_MEMORY = 100_000
"""Aggregates the loader keeps in memory (a district is ~20k persons; one aggregate is a few kB).
Beyond it the oldest are written to the persons table inside the transaction and read back from
there when one of their events comes again, so a province-sized replay runs in bounded memory."""


class SqlBulkLoad:
    """Feed ordered batches with :meth:`add`, then :meth:`finish` (commit) or :meth:`abort`."""

    def __init__(self, store: SqlStore, max_persons: int = MAX_PERSONS_IN_MEMORY) -> None:
        self.store = store
        self._max_persons = max(1, max_persons)
        self._evicted: set[str] = set()  # persons whose aggregate is only in the persons table
        self._conn = store._writer()
        self._tx = self._conn.begin()
        if store.dialect == "postgresql":  # the same lock as apply_batch: one writer per projection
            self._conn.execute(select(func.pg_advisory_xact_lock(store._lock_key)))
        self._positions: dict[int, int] = {}
        self._seen: set[str] = set()
        self._aggs: dict[str, Any] = {}
        self._erased: set[Any] = set()
        self._changed: set[str] = set()
        # alert_id -> [row (ALERT_ROW), overrides from alert.handled (ack / resolve columns)]
        self._alerts: dict[str, list[Any]] = {}
        # facts without a person (job postings: keyed by employer, so on several partitions) are
        # the only rows parallel workers of one build share: written at the end in key order, so
        # two workers' transactions can wait on each other's rows but never deadlock
        self._shared_facts: dict[Any, list[int]] = {}
        self.applied = 0

    def add(self, records: list[Consumed]) -> int:
        """Apply one batch (records in log order per partition); returns how many were applied."""
        todo = fresh_records(records, self._positions, self._seen)
        self._erased.update(rec.event.get("person_id") for rec in todo if rec.event.get("erased"))  # type: ignore[union-attr]
        if not todo:
            return 0
        if self._evicted:
            back = {rec.event.get("person_id") for rec in todo} & self._evicted  # type: ignore[union-attr]
            if back:
                self._aggs.update(self.store._load_aggregates(self._conn, back))  # our own uncommitted rows
                self._evicted -= back
        projected = project_records(self.store._projector, todo, self._aggs, self._erased, _now())
        conn, bulk = self._conn, self.store._bulk
        bulk(conn, "events", projected.event_rows)
        personal: dict[Any, list[int]] = {}
        shared = self._shared_facts
        for key, delta in projected.facts.items():
            if key.person_id:
                personal[key] = delta
            elif key in shared:
                shared[key] = [a + b for a, b in zip(shared[key], delta, strict=True)]
            else:
                shared[key] = delta
        self.store._write_facts(conn, personal)
        if projected.outbox:
            bulk(conn, "outbox", projected.outbox)
        self._changed.update(projected.changed_persons)
        alerts = self._alerts
        for alert_id, row in projected.alerts_last.items():  # an upsert keeps the human columns, not status
            overrides = alerts[alert_id][1] if alert_id in alerts else {}
            overrides.pop("status", None)
            alerts[alert_id] = [row, overrides]
        for action in projected.actions:  # like the UPDATE after the batch's upserts
            if action.alert_id in alerts:
                alerts[action.alert_id][1].update(
                    alert_action_values(action.by, action.at, action.action == "resolve"))
        self.applied += len(todo)
        if len(self._aggs) > self._max_persons:
            self._evict(len(self._aggs) - self._max_persons // 2)
        return len(todo)

    def _evict(self, count: int) -> None:
        """Write the ``count`` oldest aggregates' person rows and drop them from memory (a
        forgotten person's state lives nowhere else: those stay)."""
        aggs = self._aggs
        victims = [pid for pid in list(aggs)[: count + len(self._erased)] if pid not in self._erased][:count]
        rows = [_person_row(pid, aggs[pid]) for pid in sorted(victims) if pid in self._changed]
        if rows:
            self.store._bulk(self._conn, "persons", rows)
        for pid in victims:
            del aggs[pid]
            self._changed.discard(pid)
        self._evicted.update(victims)

    def finish(self) -> None:
        """Write persons, alerts and positions, and commit everything at once."""
        store, conn = self.store, self._conn
        try:
            aggs = self._aggs
            persons = [_person_row(pid, aggs[pid]) for pid in sorted(self._changed - self._erased)
                       if aggs.get(pid) is not None]
            if persons:
                store._bulk(conn, "persons", persons)
            shared = self._shared_facts
            store._write_facts(conn, {key: shared[key] for key in sorted(shared, key=_fact_order)})
            if self._alerts:
                store._bulk(conn, "alerts", [row for row, _ in self._alerts.values()])
            for alert_id, (_row, overrides) in self._alerts.items():
                if overrides:  # rare: people's acknowledgements, replayed from alert.handled
                    conn.execute(update(t.alerts).where(t.alerts.c.alert_id == alert_id).values(**overrides))
            if self._positions:
                store._bulk(conn, "offsets", [(store.projection, store.topic, p, o)
                                              for p, o in sorted(self._positions.items())])
            self._tx.commit()
        except BaseException:
            self.abort()
            raise
        self._conn.close()

    def abort(self) -> None:
        """Roll everything back: the store is as empty as before."""
        try:
            if self._tx.is_active:
                self._tx.rollback()
        finally:
            self._conn.close()
