"""Which need warnings are due at a date: the one query both the read API (``/api/warnings``) and the
notices that publish them (``projections/sql/notices.py``) ask.

Three rules are stored per person and need with their due date (``warnings`` rows written by the
fold: ``since <= as_of``); ``nursing_subsidy_missing`` depends on the month before ``as_of`` and is
judged here, from the ledger.  Only persons whose status is active; access follows their current
town.  Each item carries its ``warning_id`` (rule, subject and due date: stable across replays).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.engine import Connection

from processors.domain.calendar import month_start
from processors.domain.model import warning_id
from processors.domain.rules_config import RulesConfig
from processors.domain.vocabulary import NURSING_PROGRAM
from processors.domain.warnings import NEED_UNMET, NURSING_MISSING, nursing_period
from projections.sql import tables as t

IDENTITY_COLUMNS = ("name", "phone")


def due_warnings(conn: Connection, rules: RulesConfig, as_of: date, *, rule: str | None = None,
                 person_id: str | None = None, persons: Iterable[str] | None = None,
                 towns: list[str] | None = None, identity: bool = False) -> list[dict[str, Any]]:
    """Warnings due at ``as_of`` (unsorted).  ``persons``: only these (notices of a batch);
    ``identity``: with the person's name and phone (only for callers allowed to see them)."""
    if towns is not None and not towns:
        return []
    w, p = t.warnings, t.persons
    person_conds: list[Any] = [p.c.status == "active"]
    if person_id is not None:
        person_conds.append(p.c.person_id == person_id)
    if persons is not None:
        chosen = sorted(set(persons))
        if not chosen:
            return []
        person_conds.append(p.c.person_id.in_(chosen))
    if towns is not None:
        person_conds.append(p.c.town.in_(sorted(set(towns))))
    extra = [p.c[c] for c in IDENTITY_COLUMNS] if identity else []
    found: list[dict[str, Any]] = []
    if rule is None or rule != NURSING_MISSING:
        conds = [*person_conds, w.c.since <= as_of.isoformat()]
        if rule is not None:
            conds.append(w.c.rule == rule)
        stmt = (select(w.c.rule, w.c.person_id, w.c.since, p.c.town, w.c.subject, w.c.need, w.c.detail, *extra)
                .select_from(w.join(p, p.c.person_id == w.c.person_id)).where(*conds))
        for row in conn.execute(stmt):
            r, pid, since, town, subject, need, detail = row[:7]
            item = {"warning_id": warning_id(r, pid, subject, since), "rule": r, "person_id": pid, "since": since,
                    "town": town, "detail": detail}
            if r == NEED_UNMET:
                item.update(need_id=subject, need=need)
            item.update(zip(IDENTITY_COLUMNS, row[7:], strict=False))
            found.append({k: v for k, v in item.items() if v is not None})
    if (rule is None or rule == NURSING_MISSING) and rules.enabled(NURSING_MISSING):
        found += _nursing_missing(conn, rules, as_of, person_conds, extra)
    return found


def _nursing_missing(conn: Connection, rules: RulesConfig, as_of: date, person_conds: list[Any],
                     extra: list[Any]) -> list[dict[str, Any]]:
    p, L = t.persons, t.ledger
    period = nursing_period(as_of)
    paid = exists().where(L.c.person_id == p.c.person_id, L.c.kind == "payment", L.c.key == NURSING_PROGRAM,
                          L.c.period == period, L.c.counted == 1)
    stmt = select(p.c.person_id, p.c.town, *extra).where(
        *person_conds, p.c.grade <= rules.nursing_subsidy_max_grade, p.c.registered_on.is_not(None),
        p.c.registered_on < f"{period}-01", ~paid)
    since = month_start(as_of).isoformat()
    detail = f"no nursing_subsidy payment for {period}"
    out = []
    for row in conn.execute(stmt):
        pid, town = row[0], row[1]
        item = {"warning_id": warning_id(NURSING_MISSING, pid, period, since), "rule": NURSING_MISSING,
                "person_id": pid, "since": since, "town": town, "detail": detail, "period": period}
        item.update(zip(IDENTITY_COLUMNS, row[2:], strict=False))
        out.append({k: v for k, v in item.items() if v is not None})
    return out


def snoozed(conn: Connection, warning_ids: Iterable[str], as_of: date) -> dict[str, dict[str, Any]]:
    """The snoozes in force at ``as_of`` (``until`` not passed) among ``warning_ids``."""
    s = t.warning_snoozes
    ids = sorted(set(warning_ids))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 5000):
        for wid, until, reason, by, at in conn.execute(
                select(s.c.warning_id, s.c.until, s.c.reason, s.c.by, s.c.at)
                .where(s.c.warning_id.in_(ids[i:i + 5000]), s.c.until >= as_of.isoformat())):
            out[wid] = {"until": until, "reason": reason, "by": by, "at": at}
    return out
