"""Erasure of one forgotten person from the SQL read model (docs/privacy.md).

Their ledger rows become the rows of the random tombstone id with the sensitive payload fields
erased (``schemas.privacy.erase_event``, the rule replay applies, so a rebuild gives the same
rows); counts by category show ``erased``.  Their core, needs, warnings and alerts are deleted,
their outbox rows blanked (their seqs stay taken); pending reversals move to the tombstone.  Then the freed pages are
scrubbed from the files (SQLite: VACUUM and a WAL truncate; PostgreSQL: VACUUM).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from projections.sql import tables as t
from projections.sql.engines import write_transaction
from projections.sql.outbox import ERASED_CHANNEL
from projections.sql.writer import chunks
from schemas.jsontext import dumps_compact, loads
from schemas.privacy import ERASED, erase_event


def forget(engine: Engine, person_id: str, tombstone_id: str, lock_key: int) -> dict[str, int]:
    """Purge ``person_id``; idempotent; returns how many rows of each kind changed."""
    L, p, n, w, a, ob, pr = (t.ledger, t.persons, t.needs, t.warnings, t.alerts, t.alert_outbox,
                             t.pending_reversals)
    done: dict[str, int] = {}
    with write_transaction(engine, lock_key) as conn:
        rows = conn.execute(select(L.c.seq, L.c.type, L.c.kind, L.c.key, L.c.payload)
                            .where(L.c.person_id == person_id)).all()
        for seq, typ, kind, key, payload in rows:
            erased = erase_event({"type": typ, "payload": loads(payload)}, tombstone_id)["payload"]
            conn.execute(update(L).where(L.c.seq == seq).values(
                person_id=tombstone_id, key=ERASED if kind == "person" else key, payload=dumps_compact(erased)))
        if rows:  # the read API's counts index re-reads them (projections/sql/counts_index.py)
            conn.execute(insert(t.ledger_changes), [{"row_seq": seq} for seq, *_ in rows])
        done["ledger"] = len(rows)
        alert_ids = list(conn.scalars(select(a.c.alert_id).where(a.c.person_id == person_id)))
        done["alert_outbox"] = 0
        for part in chunks(alert_ids):
            done["alert_outbox"] += _blank_outbox(conn, ob.c.alert_id.in_(part))
        done["alert_actions"] = 0  # their notes are free text about the person
        for part in chunks(alert_ids):
            done["alert_actions"] += conn.execute(delete(t.alert_actions)
                                                  .where(t.alert_actions.c.alert_id.in_(part))).rowcount or 0
        warning_ids = list(conn.scalars(select(t.warning_notices.c.warning_id)
                                        .where(t.warning_notices.c.person_id == person_id)))
        for part in chunks(warning_ids):
            done["alert_outbox"] += _blank_outbox(conn, and_(ob.c.channel == "warning", ob.c.alert_id.in_(part)))
        done["warning_notices"] = conn.execute(delete(t.warning_notices)
                                               .where(t.warning_notices.c.person_id == person_id)).rowcount or 0
        done["warning_snoozes"] = conn.execute(delete(t.warning_snoozes)
                                               .where(t.warning_snoozes.c.person_id == person_id)).rowcount or 0
        done["alerts"] = conn.execute(delete(a).where(a.c.person_id == person_id)).rowcount or 0
        done["warnings"] = conn.execute(delete(w).where(w.c.person_id == person_id)).rowcount or 0
        done["needs"] = conn.execute(delete(n).where(n.c.person_id == person_id)).rowcount or 0
        done["persons"] = conn.execute(delete(p).where(p.c.person_id == person_id)).rowcount or 0
        done["pending_reversals"] = conn.execute(
            update(pr).where(pr.c.person_id == person_id).values(person_id=tombstone_id)).rowcount or 0
    scrub(engine)
    return done


def _blank_outbox(conn: Connection, which: ColumnElement[bool]) -> int:
    """Empty the outbox rows ``which`` selects, keeping their seqs: deleting them let SQLite hand
    the largest seq out again, and an SSE client or webhook subscription already past it never saw
    the next change.  Blank rows are never read (``SHOWN_CHANNELS``) nor relayed (sent)."""
    ob = t.alert_outbox
    return conn.execute(update(ob).where(which, ob.c.channel != ERASED_CHANNEL).values(
        alert_id="", channel=ERASED_CHANNEL, body="{}", traceparent=None,
        sent_at=func.coalesce(ob.c.sent_at, ob.c.created_at))).rowcount or 0


def scrub(engine: Engine) -> None:
    """Rewrite the database so deleted or overwritten rows leave the files."""
    raw: Any = engine.raw_connection()  # VACUUM runs outside any transaction
    try:
        if engine.dialect.name == "sqlite":
            cur = raw.cursor()
            cur.execute("VACUUM")
            for _ in range(50):  # a reader's snapshot may hold the WAL for a moment
                busy = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if not busy:
                    break
                time.sleep(0.2)
            cur.close()
        else:
            driver: Any = raw.driver_connection
            driver.autocommit = True
            try:
                for name in ("ledger", "persons", "needs", "warnings", "alerts", "alert_outbox", "pending_reversals"):
                    driver.execute(f"VACUUM {name}")
            finally:
                driver.autocommit = False
    finally:
        raw.close()
