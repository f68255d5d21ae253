"""A rebuilt SQL store takes over the outbox of the store it replaces (projections/replay/shadow.py
``hand_over_sql``): subscribers' positions in outbox seqs - an SSE client's Last-Event-ID, a webhook
subscription's starting seq - mean the same after the swap, and rows the old relay had not sent
yet are still sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from processors.domain.rules_config import default_rules
from projections.replay.shadow import hand_over_sql
from projections.sql import tables as t
from projections.sql.outbox import SEQ_MARGIN
from projections.sql.store import SqlStore
from tests.unit.projections.gen import Gen, batches, to_records


def store_at(path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}", default_rules())
    store.migrate()
    return store


def outbox(store: SqlStore) -> list[tuple[Any, ...]]:
    ob = t.alert_outbox
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(ob.c.seq, ob.c.alert_id, ob.c.channel, ob.c.body, ob.c.sent_at)
                                               .order_by(ob.c.seq))]


def test_the_new_store_continues_the_old_outbox_seqs(tmp_path: Path) -> None:
    check_hand_over(store_at(tmp_path / "old.sqlite3"), store_at(tmp_path / "shadow.sqlite3"))


def check_hand_over(old: SqlStore, shadow: SqlStore) -> None:
    """The hand-over's promises, on two migrated, empty stores (closed afterwards); PostgreSQL
    runs it too (tests/integration/test_sql_store_pg.py)."""
    events = Gen(seed=11, persons=40).stream(900)
    records = to_records(events)
    live, ahead = records[:700], records[700:]
    try:
        for batch in batches(live, 50):  # the old store: small live batches
            old.apply_batch(batch)
        # the old store's history was numbered differently (e.g. rows erased since): drop a few,
        # and its relay is behind: the last rows are not sent yet
        with old.engine.begin() as conn:
            first = [r[0] for r in conn.execute(select(t.alert_outbox.c.seq).order_by(t.alert_outbox.c.seq)
                                                .limit(5))]
            conn.execute(t.alert_outbox.delete().where(t.alert_outbox.c.seq.in_(first)))
        old_rows = outbox(old)
        assert len(old_rows) > 20
        old.mark_sent(r[0] for r in old_rows[:-10])
        old_rows = outbox(old)
        top = old_rows[-1][0]
        unsent = [r[0] for r in old_rows if r[4] is None]
        assert len(unsent) == 10
        for batch in batches(live + ahead, 500):  # the rebuild ran ahead of the old store
            shadow.apply_batch(batch)
        assert outbox(shadow)[-1][0] != top  # its own history is numbered otherwise

        stats = hand_over_sql(shadow, old)

        rows = outbox(shadow)
        kept = [r for r in rows if r[0] <= top]
        assert kept == old_rows  # the old outbox, seqs and sent marks and all
        later = [r for r in rows if r[0] > top]
        assert later and all(r[0] > top + SEQ_MARGIN for r in later[1:])  # after the floor row
        assert stats["alerts_requeued"] > 0 and stats["outbox_rows_adopted"] == len(old_rows)
        # an SSE client that saw the old store up to its last row gets only the re-queued alerts
        after = shadow.outbox_after(top, 10_000)
        assert [r["seq"] for r in after] == [r[0] for r in later[1:]]
        assert len(after) == stats["alerts_requeued"]
        # the old relay's unsent rows are still waiting for the relay, now in the new store
        pending = [r["seq"] for r in shadow.outbox_pending(10_000)]
        assert pending[:10] == unsent
        # the floor row is no alert: no reader shows it
        assert all(r["channel"] in ("alert", "warning") for r in shadow.outbox_after(0, 100_000))
        assert shadow.outbox_last_seq() > top + SEQ_MARGIN
    finally:
        old.close()
        shadow.close()


def test_without_an_old_store_the_history_is_marked_sent(tmp_path: Path) -> None:
    shadow = store_at(tmp_path / "shadow.sqlite3")
    try:
        for batch in batches(to_records(Gen(seed=3, persons=20).stream(300)), 100):
            shadow.apply_batch(batch)
        assert shadow.outbox_pending(10_000)
        stats = hand_over_sql(shadow, None)
        assert stats["outbox_marked_sent"] > 0 and shadow.outbox_pending(10_000) == []
    finally:
        shadow.close()
