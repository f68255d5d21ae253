"""Worked example of a projection added later: payments per month × program × town.

A projection is two parts (docs/replay.md, "Writing a new projection"); the runtime
(``processors.runtime``) does everything else - decoding, positions, de-duplication, the
transaction, retries, dead letters:

1. a **fold** (:class:`MonthlyTotals`): ``plan`` names the rows a batch needs (the payments its
   reversals name, the reversals that may have come before its payments), ``fold`` turns events
   and that state into changes - pure, no I/O (:func:`reduce_payment` is the reducer);
2. a **writer** (:class:`MonthlyProgramTotalsStore`, with the projection's queries): one transaction per batch that reads positions, the
   ids it already holds, the planned state, and writes the changes with the positions.

Registered by name at the bottom (:func:`projections.registry.register_projection`), so:

    careledger replay backfill --projection monthly_program_totals   # offset 0 → end of log
    careledger process --projection monthly_program_totals           # then live, from its offsets

A reversed payment is not counted (CONTRACT.md §2), whichever of payment and reversal arrives
first; the month is the month of the payment's business date (Asia/Shanghai).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    select,
)
from sqlalchemy.engine import Connection

from careledger.sql_schema import create_tables
from processors.domain.calendar import event_date
from processors.domain.model import Consumed
from processors.runtime.apply import commit_batch
from processors.runtime.contracts import Binding, EventKey, Positions
from projections.registry import ProjectionSpec, register_projection
from projections.sql.engines import make_engine, write_transaction
from projections.sql.positions import SqlPositions
from projections.sql.statements import InQuery, Statements

NAME = "monthly_program_totals"
PAYMENT, REVERSAL = "payment.disbursed", "payment.reversed"
metadata = MetaData()
totals_t = Table(
    "mpt_totals", metadata,
    Column("month", String(7), nullable=False), Column("program", String(64), nullable=False),
    Column("town", String(128), nullable=False),
    Column("events", BigInteger, nullable=False), Column("amount_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("month", "program", "town"),
)
payments_t = Table(  # what a later reversal needs to know about a payment
    "mpt_payments", metadata,
    Column("event_id", String(64), primary_key=True), Column("person_id", String(128), nullable=False),
    Column("month", String(7), nullable=False), Column("program", String(64), nullable=False),
    Column("town", String(128), nullable=False), Column("amount_fen", BigInteger, nullable=False),
    Column("reversed", Boolean, nullable=False),
)
reversals_t = Table(  # every reversal seen (de-duplication, and reversals that came first)
    "mpt_reversals", metadata,
    Column("event_id", String(64), primary_key=True), Column("reverses", String(64), nullable=False),
    Column("person_id", String(128), nullable=False),
)
offsets_t = Table(
    "mpt_offsets", metadata,
    Column("projection", String(64), nullable=False), Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False), Column("offset", BigInteger, nullable=False),
    PrimaryKeyConstraint("projection", "topic", "partition"),
)


# ----------------------------------------------------------------------------- the pure fold
@dataclass
class Payment:
    person_id: str
    month: str
    program: str
    town: str
    amount_fen: int
    reversed: bool = False


@dataclass
class State:
    """What the reducer reads and writes: payments by event_id, reversals by the id they reverse."""

    payments: dict[str, Payment]
    reversed_ids: dict[str, str]  # reversed payment event_id -> person_id of the reversal


Delta = tuple[tuple[str, str, str], int, int]  # (month, program, town), events, amount_fen


def reduce_payment(state: State, event: dict[str, Any]) -> list[Delta]:
    """Fold one event into ``state``; return the total deltas.  Pure (no I/O)."""
    kind = event["type"]
    payload = event["payload"]
    if kind == PAYMENT:
        pay = Payment(event["person_id"], event_date(event["occurred_at"])[:7], payload["program"],
                      event["town"], int(payload["amount_fen"]))
        state.payments[event["event_id"]] = pay
        if state.reversed_ids.get(event["event_id"]) == pay.person_id:  # the reversal came first
            pay.reversed = True
            return []
        return [((pay.month, pay.program, pay.town), 1, pay.amount_fen)]
    if kind == REVERSAL:
        target = payload["reverses"]
        state.reversed_ids[target] = event["person_id"]
        pay = state.payments.get(target)
        if pay is None or pay.reversed or pay.person_id != event["person_id"]:
            return []
        pay.reversed = True
        return [((pay.month, pay.program, pay.town), -1, -pay.amount_fen)]
    return []


@dataclass
class Changes:
    totals: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)  # new or reversed since loaded
    reversals: list[tuple[str, str, str]] = field(default_factory=list)  # (event_id, reverses, person)
    applied: int = 0


class MonthlyTotals:
    """The fold (``processors.runtime.contracts.Projection``)."""

    name = NAME

    def plan(self, events: list[dict[str, Any]]) -> list[str]:
        """Payment ids whose stored state or earlier reversal the batch may need."""
        ids = {e["event_id"] for e in events if e["type"] == PAYMENT}
        ids |= {e["payload"]["reverses"] for e in events if e["type"] == REVERSAL}
        return sorted(ids)

    def fold(self, state: State, records: list[Consumed]) -> Changes:
        out = Changes()
        for rec in records:
            event = rec.event
            assert event is not None
            if event["type"] not in (PAYMENT, REVERSAL):
                continue
            out.applied += 1
            for key, n, amount in reduce_payment(state, event):
                acc = out.totals.setdefault(key, [0, 0])
                acc[0] += n
                acc[1] += amount
            if event["type"] == PAYMENT:
                out.payments[event["event_id"]] = state.payments[event["event_id"]]
            else:
                target = event["payload"]["reverses"]
                out.reversals.append((event["event_id"], target, event["person_id"]))
                if target in state.payments:
                    out.payments[target] = state.payments[target]
        return out

    def applied(self, changes: Changes) -> int:
        return changes.applied


FOLD = MonthlyTotals()


# ----------------------------------------------------------------------------- the writer
class MonthlyProgramTotalsStore:
    """Writer and queries of the example's tables (one SQLite file or PostgreSQL database)."""

    def __init__(self, url: str, rules: Any = None, topic: str = "careledger.events",
                 projection: str = NAME) -> None:
        self.url = url
        self.name = self.projection = projection
        self.topic = topic
        self.engine = make_engine(url)
        self.statements = Statements(self.engine.dialect)
        self.statements.upsert("payments", payments_t, tuple(c.name for c in payments_t.c), ("event_id",))
        self.statements.insert_ignore("reversals", reversals_t, ("event_id", "reverses", "person_id"),
                                      ("event_id",))
        self.statements.add_to("totals", totals_t, ("month", "program", "town"), ("events", "amount_fen"))
        self.positions = SqlPositions(offsets_t, projection, topic, self.statements)
        self.in_query = InQuery(self.engine.dialect)

    # ---- lifecycle ----------------------------------------------------------------------------
    def migrate(self) -> None:
        create_tables(self.engine, metadata)

    def reset(self) -> None:
        metadata.drop_all(self.engine)
        self.migrate()

    def drop_read_models(self) -> None:
        metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- the runtime's side -------------------------------------------------------------------
    def binding(self) -> Binding:
        return Binding(FOLD, self, self.close, self.ping)

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT 1").scalar() == 1)

    def drop_positions(self, projections: list[str]) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(offsets_t.delete().where(offsets_t.c.projection.in_(projections)))

    @contextmanager
    def transaction(self) -> Iterator[TotalsBatch]:
        with write_transaction(self.engine) as conn:
            yield TotalsBatch(self, conn)

    def offsets(self) -> Positions:
        return self.positions.read_all(self.engine)

    def apply_batch(self, records: list[Consumed]) -> int:
        """The runtime's unit of work for decoded records (tests, tools)."""
        return commit_batch(FOLD, self, records)[0] if records else 0

    # ---- queries ------------------------------------------------------------------------------
    def totals(self, month_from: str | None = None, month_to: str | None = None,
               program: str | None = None, town: str | None = None) -> list[dict[str, Any]]:
        c = totals_t.c
        conds: list[Any] = []
        if month_from:
            conds.append(c.month >= month_from)
        if month_to:
            conds.append(c.month <= month_to)
        if program:
            conds.append(c.program == program)
        if town:
            conds.append(c.town == town)
        stmt = (select(c.month, c.program, func.sum(c.events), func.sum(c.amount_fen)).where(*conds)
                .group_by(c.month, c.program).order_by(c.month, c.program))
        with self.engine.connect() as conn:
            return [{"month": m, "program": p, "events": int(e), "amount_fen": int(a)}
                    for m, p, e, a in conn.execute(stmt) if e or a]

    def counts(self, kind: str, key: str | None = None, date_from: Any = None, date_to: Any = None,
               town: str | None = None) -> dict[str, int]:
        """``payment`` counts at month grain (``persons`` is not kept by this projection)."""
        if kind != "payment":
            raise ValueError("monthly_program_totals only counts payments")
        rows = self.totals(str(date_from)[:7] if date_from else None, str(date_to)[:7] if date_to else None,
                           key, town)
        return {"events": sum(r["events"] for r in rows), "persons": 0,
                "amount_fen": sum(r["amount_fen"] for r in rows), "positions": 0}

    def fingerprint(self) -> dict[str, Any]:
        return {"totals": self.snapshot_rows()["mpt_totals"]}

    def snapshot_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            return {"mpt_totals": sorted(tuple(r) for r in conn.execute(
                select(totals_t).where((totals_t.c.events != 0) | (totals_t.c.amount_fen != 0))))}


class TotalsBatch:
    """One batch's transaction on the example's tables (``UnitOfWork``)."""

    def __init__(self, writer: MonthlyProgramTotalsStore, conn: Connection) -> None:
        self.writer = writer
        self.conn = conn

    def offsets(self, partitions: Iterable[int]) -> Positions:
        return self.writer.positions.read(self.conn, partitions)

    def known(self, keys: Sequence[EventKey]) -> set[EventKey]:
        """By ``event_id`` alone: the example keeps only payments and reversals, each by its id
        (its state is looked up by payment id), and a small table's index costs little."""
        q, ids = self.writer.in_query, sorted({event_id for event_id, _ in keys})
        held = ({r[0] for r in q.rows(self.conn, "SELECT event_id FROM mpt_payments", ["event_id"], ids)}
                | {r[0] for r in q.rows(self.conn, "SELECT event_id FROM mpt_reversals", ["event_id"], ids)})
        return {key for key in keys if key[0] in held}

    def load(self, plan: list[str]) -> State:
        q, state = self.writer.in_query, State({}, {})
        for eid, pid, month, program, town, amount, rev in q.rows(
                self.conn, "SELECT event_id, person_id, month, program, town, amount_fen, reversed FROM mpt_payments",
                ["event_id"], plan):
            state.payments[eid] = Payment(pid, month, program, town, int(amount), bool(rev))
        for reverses, person in q.rows(self.conn, "SELECT reverses, person_id FROM mpt_reversals", ["reverses"],
                                       plan):
            state.reversed_ids[reverses] = person
        return state

    def write(self, changes: Changes, positions: Positions) -> None:
        run, conn = self.writer.statements.run, self.conn
        run(conn, "payments", [(eid, p.person_id, p.month, p.program, p.town, p.amount_fen, p.reversed)
                               for eid, p in changes.payments.items()])
        run(conn, "reversals", changes.reversals)
        run(conn, "totals", [(*key, n, amount) for key, (n, amount) in changes.totals.items() if n or amount])
        self.writer.positions.write(conn, positions)


def _open(url: str, rules: Any, topic: str, projection: str = NAME) -> MonthlyProgramTotalsStore:
    return MonthlyProgramTotalsStore(url, rules, topic, projection)


register_projection(ProjectionSpec(
    NAME,
    default_url=lambda s: f"sqlite:///{s.home / 'monthly_program_totals.sqlite3'}",
    open=_open,
    description="payments per month x program x town (worked example)",
))
