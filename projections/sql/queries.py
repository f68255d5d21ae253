"""The SQL read model's read side: counts, alerts, warnings, a person's record.

Answers are plain dicts shaped as CONTRACT.md §2 says, so the API only serialises them.  Access
follows a person's *current* town (``persons.town``): a caseworker's ``towns`` filter on alerts
and warnings joins the person's core row, so when a person moves, their alerts move with them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import case, distinct, func, literal, select
from sqlalchemy.engine import Engine

from processors.domain.rules_config import RulesConfig
from projections.sql import tables as t
from projections.sql.counts_index import CountsIndex
from projections.sql.due import due_warnings, snoozed
from projections.sql.eventrow import check_group_by, check_kind, date_text
from projections.sql.rows import PERSON_COLUMNS, person_from_row
from schemas.jsontext import loads

MAX_LIMIT = 10_000
_ALERT_OPTIONAL = ("town", "hazard", "program", "period", "acknowledged_by", "acknowledged_at",
                   "resolved_by", "resolved_at", "assigned_to", "assigned_at", "escalated_at", "raised_at")


#: the work queue's severity order (critical first)
SEVERITY_RANK = case((t.alerts.c.severity == "critical", 0), (t.alerts.c.severity == "high", 1), else_=2)
#: the person page shows the profile, not the stamps that ordered its updates
_STAMPS = frozenset(t.STAMP_COLUMNS)
_ALERT_PERSON = (("person_town", "person_town"), ("name", "name"), ("phone", "phone"))


def alert_item(row: Any, with_person: bool = False) -> dict[str, Any]:
    m = row._mapping
    item: dict[str, Any] = {
        "alert_id": m["alert_id"], "rule": m["rule"], "severity": m["severity"], "person_id": m["person_id"],
        "status": m["status"], "event_ids": loads(m["event_ids"]), "detected_at": m["detected_at"],
    }
    for name in _ALERT_OPTIONAL:
        if m[name] is not None:
            item[name] = m[name]
    if with_person:
        for column, key in _ALERT_PERSON:
            if column in m and m[column] is not None:
                item[key] = m[column]
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
               towns: list[str] | None = None, limit: int = 100, offset: int = 0, *, sort: str = "newest",
               assigned_to: str | None = None, escalated: bool | None = None,
               identity: bool = False) -> dict[str, Any]:
        """Alerts, filtered; ``sort``: ``newest`` (detected last first) or ``queue`` (the work
        queue: critical first, then the longest waiting).  ``towns`` (a caseworker's) follows the
        persons' current towns; ``identity`` adds their name and phone (callers allowed to see them)."""
        a, p = t.alerts, t.persons
        conds: list[Any] = []
        if rule is not None:
            conds.append(a.c.rule == rule)
        if person_id is not None:
            conds.append(a.c.person_id == person_id)
        if status is not None:
            conds.append(a.c.status == status)
        if assigned_to is not None:
            conds.append(a.c.assigned_to == assigned_to)
        if escalated is not None:
            conds.append(a.c.escalated_at.is_not(None) if escalated else a.c.escalated_at.is_(None))
        if towns is not None:  # the person's current town decides (a move takes the alerts along)
            if not towns:
                return {"total": 0, "items": []}
            conds.append(p.c.town.in_(sorted(set(towns))))
        source = a.outerjoin(p, p.c.person_id == a.c.person_id)
        order = ([SEVERITY_RANK, a.c.detected_utc, a.c.alert_id] if sort == "queue"
                 else [a.c.detected_utc.desc(), a.c.alert_id])
        extra = [p.c.town.label("person_town"), *([p.c.name, p.c.phone] if identity else [])]
        limit, offset = _page(limit, offset)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(source).where(*conds)).scalar_one()
            rows = conn.execute(select(a, *extra).select_from(source).where(*conds)
                                .order_by(*order).limit(limit).offset(offset)).all()
        return {"total": int(total), "items": [alert_item(r, with_person=True) for r in rows]}

    def alerts_summary(self, towns: list[str] | None = None, status: str = "open") -> list[dict[str, Any]]:
        """The alert queue at a glance: per rule and the persons' current town, how many, how many
        critical or escalated, and the oldest."""
        a, p = t.alerts, t.persons
        conds: list[Any] = [a.c.status == status]
        if towns is not None:
            if not towns:
                return []
            conds.append(p.c.town.in_(sorted(set(towns))))
        stmt = (select(a.c.rule, p.c.town, func.count(), func.sum(case((a.c.severity == "critical", 1), else_=0)),
                       func.sum(case((a.c.escalated_at.is_not(None), 1), else_=0)), func.min(a.c.detected_at),
                       func.sum(case((a.c.acknowledged_at.is_(None), 1), else_=0)))
                .select_from(a.outerjoin(p, p.c.person_id == a.c.person_id)).where(*conds)
                .group_by(a.c.rule, p.c.town).order_by(a.c.rule, p.c.town))
        with self.engine.connect() as conn:
            return [{"rule": rule, "town": town or "", "count": int(n), "critical": int(crit or 0),
                     "escalated": int(esc or 0), "unacknowledged": int(unack or 0), "oldest_detected_at": oldest}
                    for rule, town, n, crit, esc, oldest, unack in conn.execute(stmt)]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.alerts).where(t.alerts.c.alert_id == alert_id)).first()
        return alert_item(row) if row is not None else None

    # ---- warnings -------------------------------------------------------------------------------
    def warnings(self, as_of: date, rule: str | None = None, person_id: str | None = None,
                 towns: list[str] | None = None, limit: int = 100, offset: int = 0, *,
                 snoozed_too: bool = False, identity: bool = False) -> dict[str, Any]:
        """Warnings due at ``as_of`` for active persons, oldest first (``projections/sql/due.py``).
        A warning snoozed past ``as_of`` is left out unless ``snoozed_too`` (then it says so)."""
        if isinstance(as_of, str):
            as_of = date.fromisoformat(as_of)
        with self.engine.connect() as conn:
            found = due_warnings(conn, self.rules, as_of, rule=rule, person_id=person_id, towns=towns,
                                 identity=identity)
            snoozes = snoozed(conn, (w["warning_id"] for w in found), as_of)
        if snoozes:
            if snoozed_too:
                for w in found:
                    if w["warning_id"] in snoozes:
                        w["snoozed"] = snoozes[w["warning_id"]]
            else:
                found = [w for w in found if w["warning_id"] not in snoozes]
        found.sort(key=lambda x: (x["since"], x["rule"], x["person_id"], x.get("need_id") or ""))
        limit, offset = _page(limit, offset)
        return {"total": len(found), "items": found[offset:offset + limit]}

    def warnings_summary(self, as_of: date, towns: list[str] | None = None) -> list[dict[str, Any]]:
        """The warnings queue at a glance: per rule and town, how many are due and since when."""
        with self.engine.connect() as conn:
            found = due_warnings(conn, self.rules, as_of, towns=towns)
            snoozes = snoozed(conn, (w["warning_id"] for w in found), as_of)
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for w in found:
            g = groups.setdefault((w["rule"], w.get("town") or ""), {
                "rule": w["rule"], "town": w.get("town") or "", "due": 0, "snoozed": 0, "oldest_since": w["since"]})
            if w["warning_id"] in snoozes:
                g["snoozed"] += 1
                continue
            g["due"] += 1
            g["oldest_since"] = min(g["oldest_since"], w["since"])
        return sorted(groups.values(), key=lambda g: (g["rule"], g["town"]))

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

    def person_record(self, person_id: str, as_of: date, identity: bool = False) -> dict[str, Any] | None:
        """Everything about one person a caseworker may see: profile and status (name and phone
        only with ``identity``), the timeline of events, open alerts, handled ones with what people
        did, and the need warnings due at ``as_of`` (snoozed ones marked).  None: unknown person."""
        record = self.person_timeline(person_id)
        if record["person"] is None and not record["events"]:
            return None
        person = record["person"]
        if person is not None and not identity:
            person = {k: v for k, v in person.items() if k not in ("name", "phone")}
        actions = self.alert_actions([a["alert_id"] for a in record["alerts"]])
        for alert in record["alerts"]:
            alert["actions"] = actions.get(alert["alert_id"], [])
        warnings = self.warnings(as_of, person_id=person_id, limit=MAX_LIMIT, snoozed_too=True)["items"]
        return {"person": person, "events": record["events"],
                "open_alerts": [a for a in record["alerts"] if a["status"] == "open"],
                "handled_alerts": [a for a in record["alerts"] if a["status"] != "open" or a["actions"]],
                "warnings": warnings, "as_of": as_of.isoformat()}

    def alert_actions(self, alert_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """What people did to these alerts (alert.handled events), oldest first, per alert."""
        h = t.alert_actions
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(alert_ids), 5000):
                for row in conn.execute(select(h).where(h.c.alert_id.in_(alert_ids[i:i + 5000])).order_by(h.c.at)):
                    item = {k: v for k, v in row._mapping.items() if v is not None and k != "alert_id"}
                    out.setdefault(row.alert_id, []).append(item)
        return out

    def person_timeline(self, person_id: str) -> dict[str, Any]:
        p, L, a = t.persons, t.ledger, t.alerts
        with self.engine.connect() as conn:
            prow = conn.execute(select(p).where(p.c.person_id == person_id)).first()
            events = conn.execute(select(L.c.event_id, L.c.type, L.c.occurred_at, L.c.date, L.c.town, L.c.payload,
                                         L.c.counted, L.c.reversed_by)
                                  .where(L.c.person_id == person_id).order_by(L.c.partition, L.c.offset)).all()
            arows = conn.execute(select(a).where(a.c.person_id == person_id)
                                 .order_by(a.c.detected_utc, a.c.alert_id)).all()
        person = None if prow is None else {k: v for k, v in prow._mapping.items() if k not in _STAMPS}
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
