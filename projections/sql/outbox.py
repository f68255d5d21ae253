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

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from projections.sql import tables as t
from projections.sql.engines import write_transaction
from projections.sql.eventrow import iso
from projections.sql.queries import alert_item
from projections.sql.writer import alert_action_values, chunks, now_text
from schemas.jsontext import loads


class SqlOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def outbox_pending(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Unsent changes, oldest first: ``[{"seq", "channel", "alert_id", "alert": dict, "created_at"}]``;
        ``channel`` is ``alert`` (an alert changed or escalated) or ``warning`` (a need warning
        became due or was cleared; ``alert_id`` is then the warning id)."""
        ob = t.alert_outbox
        with self.engine.connect() as conn:
            rows = conn.execute(select(ob.c.seq, ob.c.channel, ob.c.alert_id, ob.c.body, ob.c.created_at)
                                .where(ob.c.sent_at.is_(None)).order_by(ob.c.seq).limit(max(0, int(limit)))).all()
        return [{"seq": int(seq), "channel": channel, "alert_id": aid, "alert": loads(body), "created_at": created}
                for seq, channel, aid, body, created in rows]

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
