"""Worked example of a projection added later: payments per month × program × town.

A projection is two parts (docs/replay.md, "Writing a new projection"):

1. a **pure reducer** - :func:`reduce_payment` folds one canonical event (already validated,
   upcast and unsealed) into the little state it needs and says what changed; no I/O;
2. a **store** implementing ``projections.store.ProjectionStore`` - ``migrate``, ``offsets``,
   ``apply_batch`` (effectively-once: offsets in the same transaction as the read model),
   ``close`` - plus whatever queries the projection answers (:meth:`MonthlyProgramTotalsStore.totals`).

Registered by name at the bottom (:func:`projections.registry.register_projection`), so:

    careledger replay backfill --projection monthly_program_totals   # offset 0 → end of log, bulk
    careledger process --projection monthly_program_totals           # then live, from its offsets

A reversed payment is not counted (CONTRACT.md §2), whichever of payment and reversal arrives
first; the month is the month of the payment's business date (Asia/Shanghai).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import Connection

from careledger.sql_schema import create_tables
from processors.domain.calendar import event_date
from processors.domain.model import Consumed
from projections.registry import ProjectionSpec, register_projection

NAME = "monthly_program_totals"
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


# ----------------------------------------------------------------------------- the pure reducer
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
    if kind == "payment.disbursed":
        pay = Payment(event["person_id"], event_date(event["occurred_at"])[:7], payload["program"],
                      event["town"], int(payload["amount_fen"]))
        state.payments[event["event_id"]] = pay
        if state.reversed_ids.get(event["event_id"]) == pay.person_id:  # the reversal came first
            pay.reversed = True
            return []
        return [((pay.month, pay.program, pay.town), 1, pay.amount_fen)]
    if kind == "payment.reversed":
        target = payload["reverses"]
        state.reversed_ids[target] = event["person_id"]
        pay = state.payments.get(target)
        if pay is None or pay.reversed or pay.person_id != event["person_id"]:
            return []
        pay.reversed = True
        return [((pay.month, pay.program, pay.town), -1, -pay.amount_fen)]
    return []


# ----------------------------------------------------------------------------- the store
class MonthlyProgramTotalsStore:
    def __init__(self, url: str, rules: Any = None, topic: str = "careledger.events",
                 projection: str = NAME) -> None:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        self.url = url
        self.name = self.projection = projection
        self.topic = topic
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        self._insert = insert

    def migrate(self) -> None:
        create_tables(self.engine, metadata)

    def reset(self) -> None:
        metadata.drop_all(self.engine)
        self.migrate()

    def drop_read_models(self) -> None:
        metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def offsets(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(offsets_t.c.partition, offsets_t.c.offset).where(
                offsets_t.c.projection == self.projection, offsets_t.c.topic == self.topic)).all()
        return {int(p): int(o) for p, o in rows}

    def apply_batch(self, records: list[Consumed]) -> int:
        if not records:
            return 0
        with self.engine.begin() as conn:
            return self._apply(conn, records)

    def _apply(self, conn: Connection, records: list[Consumed]) -> int:
        current = {int(p): int(o) for p, o in conn.execute(
            select(offsets_t.c.partition, offsets_t.c.offset).where(
                offsets_t.c.projection == self.projection, offsets_t.c.topic == self.topic))}
        moved: dict[int, int] = {}
        todo: list[dict[str, Any]] = []
        for rec in records:
            if rec.offset <= current.get(rec.partition, -1):
                continue
            current[rec.partition] = moved[rec.partition] = rec.offset
            if rec.event is not None and rec.event["type"] in ("payment.disbursed", "payment.reversed"):
                todo.append(rec.event)
        if not moved:
            return 0
        # load the state these events touch (one query per table), skip events already applied
        ids = {e["event_id"] for e in todo} | {e["payload"]["reverses"] for e in todo
                                               if e["type"] == "payment.reversed"}
        state = State({}, {})
        seen_reversals: set[str] = set()
        id_list = sorted(ids)
        for i in range(0, len(id_list), 500):
            chunk = id_list[i:i + 500]
            for row in conn.execute(select(payments_t).where(payments_t.c.event_id.in_(chunk))):
                state.payments[row.event_id] = Payment(row.person_id, row.month, row.program, row.town,
                                                       int(row.amount_fen), bool(row.reversed))
            for row in conn.execute(select(reversals_t).where(
                    reversals_t.c.event_id.in_(chunk) | reversals_t.c.reverses.in_(chunk))):
                state.reversed_ids[row.reverses] = row.person_id
                seen_reversals.add(row.event_id)
        known = set(state.payments) | seen_reversals
        deltas: dict[tuple[str, str, str], list[int]] = {}
        new_reversals: list[dict[str, Any]] = []
        applied = 0
        for event in todo:
            if event["event_id"] in known:
                continue  # re-sent event (same event_id): counted once
            known.add(event["event_id"])
            applied += 1
            for key, n, amount in reduce_payment(state, event):
                acc = deltas.setdefault(key, [0, 0])
                acc[0] += n
                acc[1] += amount
            if event["type"] == "payment.reversed":
                new_reversals.append({"event_id": event["event_id"], "reverses": event["payload"]["reverses"],
                                      "person_id": event["person_id"]})
        self._write(conn, state, new_reversals, deltas, moved)
        return applied

    def _write(self, conn: Connection, state: State, reversals: list[dict[str, Any]],
               deltas: dict[tuple[str, str, str], list[int]], moved: dict[int, int]) -> None:
        ins = self._insert
        if state.payments:
            stmt = ins(payments_t)
            conn.execute(stmt.on_conflict_do_update(index_elements=[payments_t.c.event_id],
                                                    set_={"reversed": stmt.excluded.reversed}),
                         [{"event_id": eid, **vars(p)} for eid, p in state.payments.items()])
        if reversals:
            conn.execute(ins(reversals_t).on_conflict_do_nothing(), reversals)
        rows = [{"month": k[0], "program": k[1], "town": k[2], "events": v[0], "amount_fen": v[1]}
                for k, v in deltas.items() if v != [0, 0]]
        if rows:
            stmt = ins(totals_t)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[totals_t.c.month, totals_t.c.program, totals_t.c.town],
                set_={"events": totals_t.c.events + stmt.excluded.events,
                      "amount_fen": totals_t.c.amount_fen + stmt.excluded.amount_fen}), rows)
            conn.execute(totals_t.delete().where(totals_t.c.events == 0, totals_t.c.amount_fen == 0))
        stmt = ins(offsets_t)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[offsets_t.c.projection, offsets_t.c.topic, offsets_t.c.partition],
            set_={"offset": stmt.excluded.offset}),
            [{"projection": self.projection, "topic": self.topic, "partition": p, "offset": o}
             for p, o in moved.items()])

    # ---- queries ---------------------------------------------------------------------------
    def totals(self, month_from: str | None = None, month_to: str | None = None,
               program: str | None = None, town: str | None = None) -> list[dict[str, Any]]:
        conds = []
        if month_from:
            conds.append(totals_t.c.month >= month_from)
        if month_to:
            conds.append(totals_t.c.month <= month_to)
        if program:
            conds.append(totals_t.c.program == program)
        if town:
            conds.append(totals_t.c.town == town)
        stmt = select(totals_t.c.month, totals_t.c.program, func.sum(totals_t.c.events),
                      func.sum(totals_t.c.amount_fen)).where(*conds).group_by(
            totals_t.c.month, totals_t.c.program).order_by(totals_t.c.month, totals_t.c.program)
        with self.engine.connect() as conn:
            return [{"month": m, "program": p, "events": int(e), "amount_fen": int(a)}
                    for m, p, e, a in conn.execute(stmt)]

    def counts(self, kind: str, key: str | None = None, date_from: Any = None, date_to: Any = None,
               town: str | None = None) -> dict[str, int]:
        """``payment`` counts at month grain (``persons`` is not kept by this projection)."""
        if kind != "payment":
            raise ValueError("monthly_program_totals only counts payments")
        rows = self.totals(str(date_from)[:7] if date_from else None, str(date_to)[:7] if date_to else None,
                           key, town)
        return {"events": sum(r["events"] for r in rows), "persons": 0,
                "amount_fen": sum(r["amount_fen"] for r in rows), "positions": 0}

    def verify_fingerprint(self) -> dict[str, Any]:
        return {"totals": self.snapshot_rows()["mpt_totals"]}

    def snapshot_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            return {"mpt_totals": sorted(tuple(r) for r in conn.execute(select(totals_t)))}


def _open(url: str, rules: Any, topic: str, projection: str = NAME) -> MonthlyProgramTotalsStore:
    return MonthlyProgramTotalsStore(url, rules, topic, projection)


register_projection(ProjectionSpec(
    NAME,
    default_url=lambda s: f"sqlite:///{s.home / 'monthly_program_totals.sqlite3'}",
    open=_open,
    description="payments per month x program x town (worked example)",
))
