"""The SQL read model's write side: a :class:`~processors.runtime.contracts.Writer` whose unit of
work reads positions, known event ids and the planned state, and writes a batch's changes.

Everything a batch does happens in one transaction (``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL
an advisory lock per projection and topic serialises writers of the same positions, e.g. two
workers during a rebalance).  Loads are a handful of set-based queries per batch, never one per
event, and bounded by what the batch touches (``processors.domain.batch.plan``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from processors.domain.aggregate import PersonAggregate
from processors.domain.batch import REVERSAL, BatchChanges, StatePlan
from processors.domain.rules_config import RulesConfig
from processors.domain.vocabulary import NURSING_PROGRAM
from processors.runtime.contracts import EventKey, Positions
from projections.sql import tables as t
from projections.sql.engines import write_transaction
from projections.sql.notices import Clock, recent_persons, reconcile, utc_now
from projections.sql.outbox_traces import ApplySpans
from projections.sql.positions import SqlPositions
from projections.sql.rows import (
    ALERT_COLUMNS,
    ALERT_STATE_COLUMNS,
    END_COLUMNS,
    LEDGER_COLUMNS,
    NEED_COLUMNS,
    PAYMENT_COLUMNS,
    PENDING_COLUMNS,
    PERSON_COLUMNS,
    WARNING_COLUMNS,
    alert_from_row,
    alert_message,
    alert_row,
    ledger_row,
    need_from_row,
    need_row,
    payment_from_row,
    person_end_from_row,
    person_from_row,
    person_row,
    warning_row,
)
from projections.sql.statements import InQuery, Statements
from schemas.jsontext import dumps_compact

CHUNK = 5000  # values per IN list (SQLite allows 32766 variables, PostgreSQL 65535)
# the loads' SELECT heads: column names from this package's constants, never from input
_SELECT_PERSONS = f"SELECT {', '.join(PERSON_COLUMNS)} FROM persons"  # noqa: S608
_SELECT_ENDS = f"SELECT {', '.join(END_COLUMNS)} FROM persons"  # noqa: S608
_SELECT_PAYMENTS = f"SELECT {', '.join(PAYMENT_COLUMNS)} FROM ledger"  # noqa: S608
_SELECT_NEEDS = f"SELECT {', '.join(NEED_COLUMNS)} FROM needs"  # noqa: S608
_SELECT_ALERTS = f"SELECT {', '.join(ALERT_STATE_COLUMNS)} FROM alerts"  # noqa: S608
PERSON_RULES = ("visit_overdue", "certificate_expiring")


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def chunks(seq: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def alert_action_values(who: str, at: str, action: str, assignee: str | None = None) -> dict[str, Any]:
    """Column values recording an action on an alert: who assigned it to whom, or who acknowledged
    (and maybe resolved) it, and when - the same for the API's immediate write and for the worker
    applying the ``alert.handled`` event, so the two agree and a replay reproduces them."""
    if action == "assign":
        return {"assigned_to": assignee, "assigned_at": at}
    values: dict[str, Any] = {"acknowledged_by": who, "acknowledged_at": at}
    if action == "resolve":
        values.update(status="resolved", resolved_by=who, resolved_at=at)
    return values


def _statements(engine: Engine) -> Statements:
    s = Statements(engine.dialect)
    s.insert("ledger", t.ledger, LEDGER_COLUMNS)
    s.update("ledger_reversed", t.ledger, ("reversed_by", "counted"), ("date", "event_id"))
    s.record_change("ledger_changed", t.ledger_changes, t.ledger)
    s.upsert("persons", t.persons, PERSON_COLUMNS, ("person_id",))
    s.upsert("needs", t.needs, NEED_COLUMNS, ("person_id", "need_id"))
    s.upsert("pending", t.pending_reversals, PENDING_COLUMNS, ("payment_id",))
    s.delete("pending_gone", t.pending_reversals, ("payment_id",))
    s.upsert("alerts", t.alerts, ALERT_COLUMNS, ("alert_id",), keep=("raised_at",))
    s.insert_ignore("alert_actions", t.alert_actions, ("event_id", "alert_id", "action", "by", "at", "note", "assignee"),
                    ("event_id",))
    s.upsert("snoozes", t.warning_snoozes, ("warning_id", "person_id", "until", "reason", "by", "at"),
             ("warning_id",))
    s.insert("outbox", t.alert_outbox, ("alert_id", "channel", "body", "created_at", "sent_at", "traceparent"))
    s.delete("warnings_of_rule", t.warnings, ("person_id", "rule"))
    s.delete("warning", t.warnings, ("person_id", "rule", "subject"))
    s.insert("warnings", t.warnings, WARNING_COLUMNS)
    return s


def lock_key(projection: str, topic: str) -> int:
    """The PostgreSQL advisory lock of one projection's positions on one topic."""
    return zlib.crc32(f"{projection}\x00{topic}".encode()) & 0x7FFFFFFF


class SqlWriter:
    """Writer of the read model tables for one projection name (positions are kept under it)."""

    def __init__(self, engine: Engine, projection: str, topic: str, rules: RulesConfig,
                 clock: Clock = utc_now, notify: bool = True) -> None:
        self.engine = engine
        self.name = projection
        self.topic = topic
        self.rules = rules
        self.clock = clock
        self.notify = notify  # publish need warnings as they become due or are fulfilled
        self._statements = _statements(engine)
        self.positions = SqlPositions(t.projection_offsets, projection, topic, self._statements)
        self.in_query = InQuery(engine.dialect)
        self.lock_key = lock_key(projection, topic)
        self._replayed_until: Positions | None = None

    @contextmanager
    def transaction(self) -> Iterator[SqlUnitOfWork]:
        with write_transaction(self.engine, self.lock_key) as conn:
            yield SqlUnitOfWork(self, conn)

    def offsets(self) -> Positions:
        return self.positions.read_all(self.engine)

    def replayed_until(self, conn: Connection) -> Positions:
        """Positions an older schema had published alerts up to (revision 0002); read once."""
        if self._replayed_until is None:
            ru = t.replayed_until
            rows = conn.execute(select(ru.c.partition, ru.c.offset).where(
                ru.c.projection == self.name, ru.c.topic == self.topic)).all()
            self._replayed_until = {int(p): int(o) for p, o in rows}
        return self._replayed_until

    def forget_cached(self) -> None:
        self._replayed_until = None


class SqlUnitOfWork:
    """One batch's transaction on the read model (``processors.runtime.contracts.UnitOfWork``)."""

    def __init__(self, writer: SqlWriter, conn: Connection) -> None:
        self.writer = writer
        self.conn = conn

    # ---- reads ----------------------------------------------------------------------------------
    def offsets(self, partitions: Iterable[int]) -> Positions:
        return self.writer.positions.read(self.conn, partitions)

    def known(self, keys: Sequence[EventKey]) -> set[EventKey]:
        """Through the ledger's ``(date, event_id)`` index (``tables.py``)."""
        return {(event_id, day) for event_id, day in self.writer.in_query.rows(
            self.conn, "SELECT event_id, date FROM ledger", ["date", "event_id"],
            sorted((day, event_id) for event_id, day in keys))}

    def load(self, plan: StatePlan) -> dict[str, PersonAggregate]:
        """Partial aggregates of the plan's persons: core (the end date alone of persons the batch
        only pays or reverses for: ``StatePlan.cores``), the named payment groups (plus the payments
        an end date may reach), pending reversals, needs and alerts."""
        conn, q = self.conn, self.writer.in_query
        groups = set(plan.groups)
        if plan.payments:  # the groups of the payments reversals name: a person's own (the contract)
            groups.update(tuple(r) for r in q.rows(conn, "SELECT person_id, key, period FROM ledger",
                                                    ["person_id", "event_id"], sorted(plan.payments),
                                                    "kind = 'payment' AND "))
        aggs: dict[str, PersonAggregate] = {}
        persons = sorted(plan.persons)
        for row in q.rows(conn, _SELECT_PERSONS, ["person_id"], sorted(plan.cores)):
            aggs[row[0]] = person_from_row(row)
        for row in q.rows(conn, _SELECT_ENDS, ["person_id"], sorted(plan.persons - plan.cores)):
            aggs[row[0]] = person_end_from_row(row)

        def agg_of(person: str) -> PersonAggregate:
            agg = aggs.get(person)
            if agg is None:  # no core row (a forgotten person's tombstone): collections only
                agg = aggs[person] = PersonAggregate(person)
            return agg

        for event_id, person, payment in map(payment_from_row, q.rows(
                conn, _SELECT_PAYMENTS, ["person_id", "key", "period"], sorted(groups), "kind = 'payment' AND ")):
            agg_of(person).payments[event_id] = payment
        for person, first in sorted(plan.ends.items()):  # rare: a status event that ends a person
            for event_id, pid, payment in map(payment_from_row, conn.exec_driver_sql(
                    f"{_SELECT_PAYMENTS} WHERE kind = 'payment' AND person_id = {q.mark} AND period >= {q.mark}",
                    (person, first)).fetchall()):
                agg_of(pid).payments[event_id] = payment
        for payment_id, reversal_id, person in q.rows(
                conn, "SELECT payment_id, reversal_id, person_id FROM pending_reversals", ["payment_id"],
                sorted(plan.pending)):
            agg_of(person).pending_reversals[payment_id] = reversal_id
        for person, need_id, need in map(need_from_row, q.rows(
                conn, _SELECT_NEEDS, ["person_id", "need_id"], sorted(plan.needs))):
            agg_of(person).needs[need_id] = need
        for row in q.rows(conn, _SELECT_ALERTS, ["person_id"], persons):
            alert = alert_from_row(row)
            agg_of(alert.person_id).alerts[alert.alert_id] = alert
        return aggs

    # ---- the write ------------------------------------------------------------------------------
    def write(self, changes: BatchChanges, positions: Positions) -> None:
        run, conn, w = self.writer._statements.run, self.conn, self.writer
        run(conn, "ledger", [ledger_row(e) for e in changes.ledger])
        run(conn, "ledger_reversed", [(rev, 0, day, pid) for pid, (day, rev) in changes.reversals.items()])
        run(conn, "ledger_changed", [(day, pid) for pid, (day, _) in changes.reversals.items()])
        run(conn, "persons", [person_row(agg) for agg in changes.persons.values()])
        run(conn, "needs", [need_row(p, nid, need) for (p, nid), need in changes.needs.items()])
        run(conn, "pending", [(pid, v[0], v[1]) for pid, v in changes.pending.items() if v is not None])
        run(conn, "pending_gone", [(pid,) for pid, v in changes.pending.items() if v is None])
        now = w.clock()
        stamp = now.isoformat(timespec="milliseconds")
        run(conn, "alerts", [alert_row(alert, offset, stamp) for alert, offset in changes.alerts.values()])
        for action in changes.alert_actions:  # rare (people clicking): one statement each, after the upserts
            conn.execute(t.alerts.update().where(t.alerts.c.alert_id == action.alert_id)
                         .values(**alert_action_values(action.by, action.at, action.action, action.assignee)))
        run(conn, "alert_actions", [(a.event_id, a.alert_id, a.action, a.by, a.at, a.note, a.assignee)
                                    for a in changes.alert_actions])
        run(conn, "snoozes", [(z.warning_id, z.person_id, z.until, z.reason, z.by, z.at) for z in changes.snoozes])
        spans = ApplySpans(changes)  # the outbox rows continue the trace of the event that caused them
        if changes.outbox:
            published = w.replayed_until(conn)
            run(conn, "outbox", [
                (alert.alert_id, "alert", dumps_compact(alert_message(alert)), stamp,
                 stamp if offset <= published.get(partition, -1) else None, spans.of_event(partition, offset))
                for alert, partition, offset in changes.outbox])
        run(conn, "warnings_of_rule", [(p, rule) for p in changes.person_warnings for rule in PERSON_RULES])
        run(conn, "warnings", [warning_row(x) for ws in changes.person_warnings.values() for x in ws])
        run(conn, "warning", [(p, "need_unmet", nid) for p, nid in changes.need_warnings])
        run(conn, "warnings", [warning_row(x) for ws in changes.need_warnings.values() for x in ws])
        affected = ({*changes.persons, *(p for p, _ in changes.need_warnings), *(z.person_id for z in changes.snoozes)}
                    | {e.person_id for e in changes.ledger if e.key == NURSING_PROGRAM or e.type == REVERSAL})
        if affected and w.notify:  # warnings that became due or were fulfilled (projections/sql/notices.py)
            notices = reconcile(conn, w.rules, now, affected - {""}, recent_persons(changes.ledger, now),
                                trace_of=spans.of_person)
            if notices.rows:
                conn.execute(insert(t.alert_outbox), notices.rows)
        w.positions.write(conn, positions)
