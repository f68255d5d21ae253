"""Alert changes waiting to be published, and people's actions on alerts.

The outbox rows are written by the batch that changed the alert, in its transaction
(``projections.sql.writer``); the relay (``processors.alert_relay``) publishes them to
``careledger.alerts`` and marks them sent.  An acknowledgement or resolution is first an
``alert.handled`` event on the log; :meth:`SqlOutbox.acknowledge_alert` records it at once for
the caller's answer, with the values the worker will write again when it applies that event.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from projections.sql import tables as t
from projections.sql.engines import write_transaction
from projections.sql.eventrow import iso
from projections.sql.queries import alert_item
from projections.sql.writer import alert_action_values, chunks, now_text
from schemas.jsontext import loads

#: the channel of the row that lifts the outbox's seqs above another store's at a hand-over
#: (:func:`adopt_outbox`); no reader shows it and it is always "sent"
FLOOR_CHANNEL = "floor"
#: the channel of an erased person's rows (``careledger forget``): blanked, not deleted, so their
#: seqs are never handed out again (SQLite reuses the largest rowid once it is deleted)
ERASED_CHANNEL = "erased"
#: how far above the old store's last seq a new store continues: the old store's worker may commit
#: rows after the copy until it follows the swap, and a stream must never meet a seq twice
SEQ_MARGIN = 1_000_000
SHOWN_CHANNELS = ("alert", "warning")


def adopt_outbox(conn: Connection, source: Engine, now: str) -> dict[str, int]:
    """Make the outbox of the store ``conn`` writes (a shadow about to become active) the one of
    ``source`` (the store it replaces): the same rows with the same seqs and sent marks, then a
    floor row ``SEQ_MARGIN`` above the last of them, so that every later row has a larger seq.

    Why: subscribers hold positions in the old store's seqs - an SSE client's ``Last-Event-ID``,
    a webhook subscription's ``start_after_seq`` - and the old store's relay may not have
    published its last rows yet.  A rebuilt store numbers its own history from 1, so its seqs
    would repeat or skip theirs; taking over the old outbox keeps them exact, and the old
    store's unsent rows stay unsent, for the relay to publish from the new store."""
    ob = t.alert_outbox
    conn.execute(delete(ob))
    copied, top = 0, 0
    with source.connect() as src:  # one read transaction: a consistent snapshot while its worker writes
        result = src.execution_options(yield_per=5000).execute(select(ob).order_by(ob.c.seq))
        for part in result.mappings().partitions():
            rows = [dict(r) for r in part]
            conn.execute(insert(ob), rows)
            copied += len(rows)
            top = int(rows[-1]["seq"])
    floor = top + SEQ_MARGIN
    conn.execute(insert(ob).values(seq=floor, alert_id="", channel=FLOOR_CHANNEL, body="{}", created_at=now,
                                   sent_at=now))
    if conn.dialect.name == "postgresql":  # explicit seqs do not move the column's sequence
        conn.execute(text("SELECT setval(pg_get_serial_sequence('alert_outbox', 'seq'), :floor)"),
                     {"floor": floor})
    return {"outbox_rows_adopted": copied, "outbox_seq_floor": floor}


class SqlOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def outbox_pending(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Unsent changes, oldest first: ``[{"seq", "channel", "alert_id", "alert": dict, "created_at",
        "traceparent"}]``; ``channel`` is ``alert`` (an alert changed or escalated) or ``warning`` (a
        need warning became due or was cleared; ``alert_id`` is then the warning id); ``traceparent``
        continues the trace of the event that caused the change (None: no event did)."""
        ob = t.alert_outbox
        with self.engine.connect() as conn:
            rows = conn.execute(select(ob.c.seq, ob.c.channel, ob.c.alert_id, ob.c.body, ob.c.created_at,
                                       ob.c.traceparent)
                                .where(ob.c.sent_at.is_(None)).order_by(ob.c.seq).limit(max(0, int(limit)))).all()
        return [{"seq": int(seq), "channel": channel, "alert_id": aid, "alert": loads(body), "created_at": created,
                 "traceparent": traceparent}
                for seq, channel, aid, body, created, traceparent in rows]

    def outbox_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        """Changes committed after ``seq``, in order (the SSE stream reads them): ``[{"seq",
        "channel", "message": dict, "town"}]``; ``town`` is the person's current town (a move takes
        the stream along, as it takes the alerts), else the message's.  Seqs are committed in order
        (SQLite has one writer; the PostgreSQL store serialises batches with an advisory lock), so
        a reader never sees seq N+1 before N."""
        ob, p = t.alert_outbox, t.persons
        with self.engine.connect() as conn:
            rows = conn.execute(select(ob.c.seq, ob.c.channel, ob.c.body)
                                .where(ob.c.seq > int(seq), ob.c.channel.in_(SHOWN_CHANNELS))
                                .order_by(ob.c.seq).limit(max(0, int(limit)))).all()
            items = [{"seq": int(s), "channel": channel, "message": loads(body)} for s, channel, body in rows]
            persons = sorted({i["message"].get("person_id") for i in items} - {None})
            towns: dict[str, str] = {}
            for part in chunks(persons):
                towns.update(dict(conn.execute(select(p.c.person_id, p.c.town).where(p.c.person_id.in_(part))).all()))
        for item in items:
            message = item["message"]
            item["town"] = towns.get(message.get("person_id")) or message.get("town")
        return items

    def outbox_last_seq(self) -> int:
        """The newest seq (0: empty): a stream without a position starts after it."""
        ob = t.alert_outbox
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(ob.c.seq), 0))).scalar_one())

    def mark_sent(self, seqs: Iterable[int]) -> int:
        seq_list = sorted({int(s) for s in seqs})
        ob = t.alert_outbox
        n = 0
        now = now_text()
        with write_transaction(self.engine) as conn:
            for part in chunks(seq_list):
                n += conn.execute(update(ob).where(ob.c.seq.in_(part), ob.c.sent_at.is_(None))
                                  .values(sent_at=now)).rowcount or 0
        return n

    def record_alert_action(self, alert_id: str, who: str, at: str | datetime | None, action: str,
                            assignee: str | None = None) -> dict[str, Any] | None:
        """Record who assigned, acknowledged or resolved an alert; the alert, or None if unknown."""
        a = t.alerts
        values = alert_action_values(who, iso(at) or now_text(), action, assignee)
        with write_transaction(self.engine) as conn:
            if not conn.execute(update(a).where(a.c.alert_id == alert_id).values(**values)).rowcount:
                return None
            row = conn.execute(select(a).where(a.c.alert_id == alert_id)).one()
        return alert_item(row)

    def record_snooze(self, warning_id: str, person_id: str, until: str, reason: str, by: str, at: str) -> None:
        """Put a warning aside until a date at once (the API; the warning.snoozed event repeats
        it with the same values)."""
        z = t.warning_snoozes
        with write_transaction(self.engine) as conn:
            conn.execute(delete(z).where(z.c.warning_id == warning_id))
            conn.execute(insert(z).values(warning_id=warning_id, person_id=person_id, until=until, reason=reason,
                                          by=by, at=at))
