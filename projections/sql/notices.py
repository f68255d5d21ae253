"""Pushing need warnings and escalations to subscribers, once (issue 14).

A warning is published when it becomes due and again, as cleared, when the event that fulfils it
arrives.  What was published is kept (``warning_notices``) in the same transaction as the outbox
row that publishes it, so a restart never publishes a warning twice; a rebuild copies the old
store's notices at hand-over (``projections/replay/shadow.py``), so a replay does not either.

Two paths find warnings that became due:

* the **daily sweep** (the SQL worker's timer, at ``CARELEDGER_WARNING_SWEEP_AT`` Asia/Shanghai
  time): every warning due today that was never published - including the monthly
  ``nursing_subsidy_missing`` ones, due on the first of a month;
* the **event** that makes one due, in the batch that applies it - only for events of the last
  ``RECENT_DAYS`` days: a replay of history (old events) publishes nothing by itself, the sweep
  publishes what is due now.

Clearing has no such limit: any published warning that is no longer due when a batch changes its
person is published as cleared.  A snoozed warning is not published while snoozed.

The sweep also **escalates**: a critical alert neither acknowledged nor resolved
``CARELEDGER_ESCALATE_AFTER_H`` hours (default 24) after this store first raised it is published
again with ``"escalated": true`` - once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from careledger import clock
from processors.domain.rules_config import RulesConfig
from projections.sql import tables as t
from projections.sql.due import due_warnings, snoozed
from projections.sql.queries import alert_item
from schemas.jsontext import dumps_compact

SHANGHAI = ZoneInfo("Asia/Shanghai")
RECENT_DAYS = 7
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return clock.utc_now()


def today_in_shanghai(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


@dataclass
class Published:
    due: int = 0
    cleared: int = 0
    escalated: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # outbox rows to insert

    def add(self, other: Published) -> None:
        self.due += other.due
        self.cleared += other.cleared
        self.escalated += other.escalated
        self.rows += other.rows


def _outbox_row(channel: str, key: str, message: dict[str, Any], now: str,
                traceparent: str | None = None) -> dict[str, Any]:
    return {"alert_id": key, "channel": channel, "body": dumps_compact(message), "created_at": now, "sent_at": None,
            "traceparent": traceparent}


def reconcile(conn: Connection, rules: RulesConfig, now: datetime, persons: Iterable[str] | None = None,
              recent: set[str] | None = None, trace_of: Callable[[str], str | None] | None = None) -> Published:
    """Publish newly due warnings and clear published ones that are no longer due.

    ``persons``: only these (a batch); None: everyone (the sweep).  ``recent``: of those, the persons
    whose new due warnings may be published now (a batch: persons with recent events); None: all.
    ``trace_of``: person -> the traceparent of the batch's event that changed them (a batch)."""
    trace = trace_of or _no_trace
    stamp = now.isoformat(timespec="milliseconds")
    today = today_in_shanghai(now)
    chosen = None if persons is None else sorted(set(persons))
    if chosen == []:
        return Published()
    n = t.warning_notices
    stmt = select(n.c.warning_id, n.c.person_id, n.c.rule).where(n.c.state == "due")
    published: dict[str, tuple[str, str]] = {}
    if chosen is None:
        published = {wid: (pid, rule) for wid, pid, rule in conn.execute(stmt)}
    else:
        for i in range(0, len(chosen), 5000):
            published.update({wid: (pid, rule) for wid, pid, rule in conn.execute(
                stmt.where(n.c.person_id.in_(chosen[i:i + 5000])))})
        # only persons that may publish something: a new due warning (recent events) or a clearing
        # (a published warning); a replay of old history judges nobody (profile: docs/performance.md)
        if recent is not None:
            chosen = sorted((set(recent) & set(chosen)) | {pid for pid, _rule in published.values()})
            if not chosen:
                return Published()
    due = due_warnings(conn, rules, today, persons=chosen)
    by_id = {w["warning_id"]: w for w in due}
    out = Published()
    quiet = snoozed(conn, (wid for wid in by_id if wid not in published), today)
    new = [w for wid, w in by_id.items()
           if wid not in published and wid not in quiet and (recent is None or w["person_id"] in recent)]
    gone = [(wid, pid, rule) for wid, (pid, rule) in published.items() if wid not in by_id]
    if new:
        conn.execute(insert(n), [{"warning_id": w["warning_id"], "person_id": w["person_id"], "rule": w["rule"],
                                  "state": "due", "due_at": stamp} for w in new])
        out.rows += [_outbox_row("warning", w["warning_id"], {"kind": "warning.due", **w}, stamp,
                                 trace(w["person_id"])) for w in new]
        out.due = len(new)
    if gone:
        towns = _towns(conn, {pid for _, pid, _ in gone})
        for i in range(0, len(gone), 5000):
            conn.execute(update(n).where(n.c.warning_id.in_([g[0] for g in gone[i:i + 5000]]))
                         .values(state="cleared", cleared_at=stamp))
        out.rows += [_outbox_row("warning", wid, {k: v for k, v in {
            "kind": "warning.cleared", "warning_id": wid, "rule": rule, "person_id": pid,
            "town": towns.get(pid)}.items() if v is not None}, stamp, trace(pid)) for wid, pid, rule in gone]
        out.cleared = len(gone)
    return out


def _no_trace(_person_id: str) -> None:
    return None


def escalate(conn: Connection, now: datetime, after: timedelta) -> Published:
    """Publish once more, with ``escalated: true``, every critical alert open and unacknowledged
    ``after`` its first raising."""
    a = t.alerts
    stamp = now.isoformat(timespec="milliseconds")
    cutoff = (now - after).isoformat(timespec="milliseconds")
    rows = conn.execute(select(a).where(a.c.severity == "critical", a.c.status == "open",
                                        a.c.acknowledged_at.is_(None), a.c.escalated_at.is_(None),
                                        a.c.raised_at.is_not(None), a.c.raised_at <= cutoff)).all()
    out = Published()
    if not rows:
        return out
    ids = [r.alert_id for r in rows]
    for i in range(0, len(ids), 5000):
        conn.execute(update(a).where(a.c.alert_id.in_(ids[i:i + 5000])).values(escalated_at=stamp))
    for row in rows:
        item = alert_item(row)
        message = {k: item[k] for k in ("alert_id", "rule", "severity", "person_id", "status", "event_ids",
                                        "detected_at", "town", "hazard", "program", "period") if k in item}
        out.rows.append(_outbox_row("alert", row.alert_id, {**message, "escalated": True, "escalated_at": stamp},
                                    stamp))
    out.escalated = len(rows)
    return out


def recent_persons(entries: Iterable[Any], now: datetime) -> set[str]:
    """Persons of ledger entries dated within ``RECENT_DAYS`` of today (Shanghai)."""
    first = (today_in_shanghai(now) - timedelta(days=RECENT_DAYS)).isoformat()
    return {e.person_id for e in entries if e.person_id and e.date >= first}


def _towns(conn: Connection, persons: set[str]) -> dict[str, str]:
    p = t.persons
    ids = sorted(persons)
    out: dict[str, str] = {}
    for i in range(0, len(ids), 5000):
        out.update(dict(conn.execute(select(p.c.person_id, p.c.town).where(p.c.person_id.in_(ids[i:i + 5000]))).all()))
    return out


__all__ = ["RECENT_DAYS", "Published", "escalate", "reconcile", "recent_persons", "today_in_shanghai", "utc_now"]
