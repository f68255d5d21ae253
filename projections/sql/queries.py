"""The SQL read model's read side: counts, alerts, warnings, a person's record.

Answers are plain dicts shaped as CONTRACT.md §2 says, so the API only serialises them.  Access
follows a person's *current* town (``persons.town``): a caseworker's ``towns`` filter on alerts
and warnings joins the person's core row, so when a person moves, their alerts move with them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import case, distinct, exists, func, literal, select
from sqlalchemy.engine import Engine

from processors.domain.calendar import month_start
from processors.domain.rules_config import RulesConfig
from processors.domain.vocabulary import NURSING_PROGRAM
from processors.domain.warnings import NEED_UNMET, NURSING_MISSING, nursing_period
from projections.sql import tables as t
from projections.sql.counts_index import CountsIndex
from projections.sql.eventrow import check_group_by, check_kind, date_text
from projections.sql.rows import PERSON_COLUMNS, person_from_row
from schemas.jsontext import loads

MAX_LIMIT = 10_000
_ALERT_OPTIONAL = ("town", "hazard", "program", "period", "acknowledged_by", "acknowledged_at",
                   "resolved_by", "resolved_at")


def alert_item(row: Any) -> dict[str, Any]:
    m = row._mapping
    item: dict[str, Any] = {
        "alert_id": m["alert_id"], "rule": m["rule"], "severity": m["severity"], "person_id": m["person_id"],
        "status": m["status"], "event_ids": loads(m["event_ids"]), "detected_at": m["detected_at"],
    }
    for name in _ALERT_OPTIONAL:
        if m[name] is not None:
            item[name] = m[name]
    return item


def _day(value: date | str | None) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _page(limit: int, offset: int) -> tuple[int, int]:
    return max(0, min(int(limit), MAX_LIMIT)), max(0, int(offset))


class SqlQueries:
    """Read queries over one SQL read model (thread-safe: a connection per call).  Counts come from
    the in-memory :class:`~projections.sql.counts_index.CountsIndex` (built on the first count);
    ``sql_counts``/``sql_grouped_counts`` ask the database (the reference the index is tested
    against)."""

    def __init__(self, engine: Engine, rules: RulesConfig) -> None:
        self.engine = engine
        self.rules = rules
        self.index = CountsIndex(engine)

    # ---- counts ---------------------------------------------------------------------------------
    @staticmethod
    def _fact_filters(kind: str, key: str | None, date_from: Any, date_to: Any, town: str | None) -> list[Any]:
        check_kind(kind)
        L = t.ledger
        conds = [L.c.kind == kind, L.c.counted == 1]
        if key is not None:
            conds.append(L.c.key == key)
        if town is not None:
            conds.append(L.c.town == town)
        if date_from is not None:
            conds.append(L.c.date >= date_text(date_from))
        if date_to is not None:
            conds.append(L.c.date <= date_text(date_to))
        return conds

    @staticmethod
    def _measures() -> list[Any]:
        L = t.ledger
        return [
            func.count().label("events"),
            func.count(distinct(case((L.c.person_id != "", L.c.person_id)))).label("persons"),
            func.coalesce(func.sum(L.c.amount_fen), 0).label("amount_fen"),
            func.coalesce(func.sum(L.c.positions), 0).label("positions"),
        ]

    def counts(self, kind: str, key: str | None = None, date_from: date | None = None,
               date_to: date | None = None, town: str | None = None) -> dict[str, int]:
        return self.index.counts(kind, key, _day(date_from), _day(date_to), town)

    def grouped_counts(self, kind: str, group_by: list[str], key: str | None = None, date_from: date | None = None,
                       date_to: date | None = None, town: str | None = None) -> list[dict[str, Any]]:
        return self.index.grouped_counts(kind, group_by, key, _day(date_from), _day(date_to), town)

    def sql_counts(self, kind: str, key: str | None = None, date_from: date | None = None,
                   date_to: date | None = None, town: str | None = None) -> dict[str, int]:
        conds = self._fact_filters(kind, key, date_from, date_to, town)
        with self.engine.connect() as conn:
            row = conn.execute(select(*self._measures()).where(*conds)).one()
        return {"events": int(row[0]), "persons": int(row[1]), "amount_fen": int(row[2]), "positions": int(row[3])}

    def sql_grouped_counts(self, kind: str, group_by: list[str], key: str | None = None,
                           date_from: date | None = None, date_to: date | None = None,
                           town: str | None = None) -> list[dict[str, Any]]:
        cols = check_group_by(group_by)
        L = t.ledger
        exprs = {"key": L.c.key, "town": L.c.town, "date": L.c.date, "month": func.substr(L.c.date, 1, 7)}
        stmt = select(*[exprs[c].label(c) for c in cols], *self._measures()).where(
            *self._fact_filters(kind, key, date_from, date_to, town))
        if cols:
            stmt = stmt.group_by(*[exprs[c] for c in cols]).order_by(*[exprs[c] for c in cols])
        out: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for row in conn.execute(stmt):
                m = row._mapping
                item = {c: m[c] for c in cols}
                item.update(events=int(m["events"]), persons=int(m["persons"]), amount_fen=int(m["amount_fen"]),
                            positions=int(m["positions"]))
                if not cols and item["events"] == 0:
                    continue
                out.append(item)
        return out

    # ---- alerts ---------------------------------------------------------------------------------
    def alerts(self, rule: str | None = None, person_id: str | None = None, status: str | None = None,
               towns: list[str] | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        a, p = t.alerts, t.persons
        conds: list[Any] = []
        if rule is not None:
            conds.append(a.c.rule == rule)
        if person_id is not None:
            conds.append(a.c.person_id == person_id)
        if status is not None:
            conds.append(a.c.status == status)
        source: Any = a
        if towns is not None:  # the person's current town decides (a move takes the alerts along)
            if not towns:
                return {"total": 0, "items": []}
            source = a.join(p, p.c.person_id == a.c.person_id)
            conds.append(p.c.town.in_(sorted(set(towns))))
        limit, offset = _page(limit, offset)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(source).where(*conds)).scalar_one()
            rows = conn.execute(select(a).select_from(source).where(*conds)
                                .order_by(a.c.detected_utc.desc(), a.c.alert_id).limit(limit).offset(offset)).all()
        return {"total": int(total), "items": [alert_item(r) for r in rows]}

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.alerts).where(t.alerts.c.alert_id == alert_id)).first()
        return alert_item(row) if row is not None else None

    # ---- warnings -------------------------------------------------------------------------------
    def warnings(self, as_of: date, rule: str | None = None, person_id: str | None = None,
                 towns: list[str] | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """Warnings due at ``as_of`` for active persons, oldest first (see processors/domain/warnings.py:
        the standing ones are stored with their due date; nursing_subsidy_missing is judged here)."""
        if isinstance(as_of, str):
            as_of = date.fromisoformat(as_of)
        if towns is not None and not towns:
            return {"total": 0, "items": []}
        w, p = t.warnings, t.persons
        person_conds: list[Any] = [p.c.status == "active"]
        if person_id is not None:
            person_conds.append(p.c.person_id == person_id)
        if towns is not None:
            person_conds.append(p.c.town.in_(sorted(set(towns))))
        found: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            if rule is None or rule != NURSING_MISSING:
                conds = [*person_conds, w.c.since <= as_of.isoformat()]
                if rule is not None:
                    conds.append(w.c.rule == rule)
                stmt = (select(w.c.rule, w.c.person_id, w.c.since, p.c.town, w.c.subject, w.c.need, w.c.detail)
                        .select_from(w.join(p, p.c.person_id == w.c.person_id)).where(*conds))
                for r, pid, since, town, subject, need, detail in conn.execute(stmt):
                    item = {"rule": r, "person_id": pid, "since": since, "town": town, "detail": detail}
                    if r == NEED_UNMET:
                        item.update(need_id=subject, need=need)
                    found.append({k: v for k, v in item.items() if v is not None})
            if (rule is None or rule == NURSING_MISSING) and self.rules.enabled(NURSING_MISSING):
                found += self._nursing_missing(conn, as_of, person_conds)
        found.sort(key=lambda x: (x["since"], x["rule"], x["person_id"], x.get("need_id") or ""))
        limit, offset = _page(limit, offset)
        return {"total": len(found), "items": found[offset:offset + limit]}

    def _nursing_missing(self, conn: Any, as_of: date, person_conds: list[Any]) -> list[dict[str, Any]]:
        p, L = t.persons, t.ledger
        period = nursing_period(as_of)
        paid = exists().where(L.c.person_id == p.c.person_id, L.c.kind == "payment", L.c.key == NURSING_PROGRAM,
                              L.c.period == period, L.c.counted == 1)
        stmt = select(p.c.person_id, p.c.town).where(
            *person_conds, p.c.grade <= self.rules.nursing_subsidy_max_grade, p.c.registered_on.is_not(None),
            p.c.registered_on < f"{period}-01", ~paid)
        since = month_start(as_of).isoformat()
        detail = f"no nursing_subsidy payment for {period}"
        return [{k: v for k, v in {"rule": NURSING_MISSING, "person_id": pid, "since": since, "town": town,
                                   "detail": detail}.items() if v is not None}
                for pid, town in conn.execute(stmt)]

    # ---- persons --------------------------------------------------------------------------------
    def person_town(self, person_id: str) -> str | None:
        """The person's current town (None: unknown person)."""
        with self.engine.connect() as conn:
            return conn.scalar(select(t.persons.c.town).where(t.persons.c.person_id == person_id))

    def person_aggregate(self, person_id: str) -> Any:
        """The stored core of a person (a partial ``PersonAggregate``), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*[t.persons.c[c] for c in PERSON_COLUMNS])
                               .where(t.persons.c.person_id == person_id)).first()
        return None if row is None else person_from_row(row)

    def person_timeline(self, person_id: str) -> dict[str, Any]:
        p, L, a = t.persons, t.ledger, t.alerts
        with self.engine.connect() as conn:
            prow = conn.execute(select(p).where(p.c.person_id == person_id)).first()
            events = conn.execute(select(L.c.event_id, L.c.type, L.c.occurred_at, L.c.date, L.c.town, L.c.payload,
                                         L.c.counted, L.c.reversed_by)
                                  .where(L.c.person_id == person_id).order_by(L.c.partition, L.c.offset)).all()
            arows = conn.execute(select(a).where(a.c.person_id == person_id)
                                 .order_by(a.c.detected_utc, a.c.alert_id)).all()
        person = None if prow is None else {k: v for k, v in prow._mapping.items() if not k.startswith("stamp_")}
        return {
            "person": person,
            "events": [{"event_id": eid, "type": typ, "occurred_at": at, "date": day, "person_id": person_id,
                        "town": town, "payload": loads(payload),
                        **({"reversed_by": rev} if rev is not None else {})}
                       for eid, typ, at, day, town, payload, _counted, rev in events],
            "alerts": [alert_item(r) for r in arows],
        }

    # ---- whole-store views (tests, replay verification) -----------------------------------------
    def event_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.ledger)).scalar_one())

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(select(literal(1))).scalar_one() == 1)

    _SNAPSHOT_COLUMNS = {
        "ledger": ("event_id", "type", "kind", "key", "town", "date", "person_id", "period", "amount_fen",
                   "positions", "counted", "reversed_by", "occurred_at", "payload"),
        "persons": tuple(c.name for c in t.persons.c),
        "needs": tuple(c.name for c in t.needs.c),
        "pending_reversals": tuple(c.name for c in t.pending_reversals.c),
        "alerts": ("alert_id", "rule", "severity", "person_id", "town", "status", "event_ids", "detected_at",
                   "hazard", "program", "period"),
        "warnings": tuple(c.name for c in t.warnings.c),
    }

    def snapshot_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every read-model row as sorted tuples, per table.  Leaves out what legitimately differs
        between two correct runs over the same events: Kafka positions (``ledger.partition/offset``,
        ``alerts.updated_offset``), offsets, the outbox and human acknowledgement fields."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for name, cols in self._SNAPSHOT_COLUMNS.items():
                table = t.metadata.tables[name]
                rows = conn.execute(select(*[table.c[c] for c in cols])).all()
                out[name] = sorted((tuple(r) for r in rows), key=_sort_key)
        return out


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((0,) if v is None else (1, v) for v in row)


__all__ = ["MAX_LIMIT", "SqlQueries", "alert_item"]
