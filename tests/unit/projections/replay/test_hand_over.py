"""A rebuilt SQL store takes over the outbox of the store it replaces (projections/replay/shadow.py
``hand_over_sql``): subscribers' positions in outbox seqs - an SSE client's Last-Event-ID, a webhook
subscription's starting seq - mean the same after the swap, and rows the old relay had not sent
yet are still sent."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from processors.domain.rules_config import RulesConfig, default_rules
from projections.replay.shadow import hand_over_sql, settle_left_out
from projections.sql import tables as t
from projections.sql.outbox import SEQ_MARGIN
from projections.sql.store import SqlStore
from tests.unit.projections.gen import Gen, batches, to_records


def store_at(path: Path, rules: RulesConfig | None = None) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}", rules or default_rules())
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
        assert stats["changed_alerts_queued"] == 0  # same rules: the shadow sees every alert as the old store
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


def edited_rules() -> RulesConfig:
    """Payments above 400 yuan are out of range now (new alerts), and such alerts are "high"
    (the old ones change severity)."""
    rules = default_rules()
    return replace(rules, amount_ranges_fen={p: (lo, min(hi, 40_000)) for p, (lo, hi) in rules.amount_ranges_fen.items()},
                   rule_severity={**rules.rule_severity, "amount_out_of_range": "high"})


def alert_rows(store: SqlStore) -> dict[str, tuple[Any, ...]]:
    a = t.alerts
    with store.engine.connect() as conn:
        rows = conn.execute(select(a.c.alert_id, a.c.rule, a.c.severity, a.c.person_id, a.c.status, a.c.event_ids))
        return {r[0]: (r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows}


def queued_after(store: SqlStore, seq: int) -> dict[str, dict[str, Any]]:
    return {r["message"]["alert_id"]: r["message"] for r in store.outbox_after(seq, 100_000)}


def widened_rules() -> RulesConfig:
    """No amount is out of range any more: every ``amount_out_of_range`` alert goes."""
    return replace(default_rules(), amount_ranges_fen={p: (0, 10**12) for p in default_rules().amount_ranges_fen})


def rebuilt_with_edited_rules(tmp_path: Path, old_events: int, shadow_events: int,
                              rules: RulesConfig | None = None) -> tuple[SqlStore, SqlStore]:
    records = to_records(Gen(seed=5, persons=60).stream(900))
    old, shadow = store_at(tmp_path / "old.sqlite3"), store_at(tmp_path / "shadow.sqlite3", rules or edited_rules())
    for batch in batches(records[:old_events], 100):
        old.apply_batch(batch)
    old.mark_sent(r["seq"] for r in old.outbox_pending(100_000))  # subscribers have the old store's alerts
    for batch in batches(records[:shadow_events], 300):
        shadow.apply_batch(batch)
    return old, shadow


def test_what_edited_rules_change_is_queued_for_subscribers(tmp_path: Path) -> None:
    """Before, the hand-over marked the shadow's history as published: the alerts only the edited
    rules raise showed in /api/alerts but no subscriber was ever told."""
    old, shadow = rebuilt_with_edited_rules(tmp_path, 900, 900)
    try:
        top = old.outbox_last_seq()
        before, after = alert_rows(old), alert_rows(shadow)
        new = {aid for aid in after if aid not in before}
        changed = {aid for aid in after if aid in before and after[aid] != before[aid]}
        assert new and changed and all(after[aid][0] == "amount_out_of_range" for aid in new | changed)

        stats = hand_over_sql(shadow, old)

        queued = queued_after(shadow, top)
        assert set(queued) == new | changed and stats["changed_alerts_queued"] == len(queued)
        for aid, message in queued.items():  # what they say is the new store's state
            assert (message["rule"], message["severity"], message["person_id"], message["status"],
                    message["event_ids"]) == after[aid]
        assert {r["alert_id"] for r in shadow.outbox_pending(100_000)} == set(queued)  # the relay sends them
    finally:
        old.close()
        shadow.close()


def test_persons_the_old_store_saw_further_are_left_to_the_live_worker(tmp_path: Path) -> None:
    """The old worker kept applying events while the shadow was handed over: the shadow's state of
    those persons is older than what subscribers have, so it is not sent; the live worker applies
    their events to the new store after the swap and queues what changes then."""
    records = to_records(Gen(seed=5, persons=60).stream(900))
    later = {r.event["person_id"] for r in records[700:] if r.event is not None}
    old, shadow = rebuilt_with_edited_rules(tmp_path, 900, 700)
    try:
        top = old.outbox_last_seq()
        before, after = alert_rows(old), alert_rows(shadow)
        differ = {aid for aid in after if before.get(aid) != after[aid]}
        assert any(after[aid][2] in later for aid in differ)  # there is something to leave out
        stats = hand_over_sql(shadow, old)
        queued = queued_after(shadow, top)
        assert queued and stats["changed_alerts_queued"] == len(queued)
        assert not {m["person_id"] for m in queued.values()} & later
        assert set(queued) == {aid for aid in differ if after[aid][2] not in later}
    finally:
        old.close()
        shadow.close()


def test_an_open_alert_the_edited_rules_no_longer_raise_is_withdrawn(tmp_path: Path) -> None:
    """Before, such an alert silently left /api/alerts: subscribers (a case system upserting by
    alert_id, an SMS gateway) kept it open for ever.  Now its last message says resolved and
    withdrawn; one already resolved is not sent again, and the alerts that stay are not sent."""
    old, shadow = rebuilt_with_edited_rules(tmp_path, 900, 900, widened_rules())
    try:
        with old.engine.begin() as conn:  # one of them was resolved by a caseworker before the rebuild
            a = t.alerts
            resolved = conn.scalars(select(a.c.alert_id).where(a.c.rule == "amount_out_of_range")
                                    .order_by(a.c.alert_id).limit(1)).one()
            conn.execute(a.update().where(a.c.alert_id == resolved).values(status="resolved"))
        top = old.outbox_last_seq()
        before, after = alert_rows(old), alert_rows(shadow)
        gone = {aid for aid in before if aid not in after}
        assert gone and all(before[aid][0] == "amount_out_of_range" for aid in gone) and resolved in gone
        assert all(after[aid] == before[aid] for aid in after)  # nothing else changed

        stats = hand_over_sql(shadow, old)

        queued = queued_after(shadow, top)
        still_open = {aid for aid in gone if before[aid][3] == "open"}
        assert still_open and resolved not in still_open
        assert set(queued) == still_open
        assert stats["withdrawn_alerts_queued"] == len(queued) and stats["changed_alerts_queued"] == 0
        for aid, message in queued.items():
            rule, severity, person, _status, event_ids = before[aid]
            assert (message["rule"], message["severity"], message["person_id"], message["event_ids"]) == \
                (rule, severity, person, event_ids)
            assert message["status"] == "resolved" and message["withdrawn"] is True and message["withdrawn_at"]
        assert {r["alert_id"] for r in shadow.outbox_pending(100_000)} == set(queued)  # the relay sends them
        assert not set(queued) & set(alert_rows(shadow))  # and /api/alerts no longer has them
    finally:
        old.close()
        shadow.close()


def last_messages(store: SqlStore) -> dict[str, dict[str, Any]]:
    """What a subscriber holds: the last message per alert over the whole outbox."""
    last: dict[str, dict[str, Any]] = {}
    for r in store.outbox_after(0, 10**7):
        if r["channel"] == "alert":
            last[r["message"]["alert_id"]] = r["message"]
    return last


def test_alerts_of_persons_left_to_the_live_worker_are_settled_after_the_swap(tmp_path: Path) -> None:
    """The old worker applied 20 more events during the hand-over; after the swap the live worker
    applies them to the new store.  Before, the edited rules' changes to those persons' alerts
    (another severity, an alert no longer raised) were sent by nobody: 4 withdrawals and 33
    severities lost in this run.  Now every alert's last message is its state in the new store."""
    records = to_records(Gen(seed=5, persons=60).stream(900))
    rules = replace(default_rules(), rule_severity={**default_rules().rule_severity, "amount_out_of_range": "high"},
                    amount_ranges_fen={p: ((0, 10**12) if p == "living_subsidy" else v)
                                       for p, v in default_rules().amount_ranges_fen.items()})
    old, new = store_at(tmp_path / "old.sqlite3"), store_at(tmp_path / "new.sqlite3", rules)
    try:
        for batch in batches(records, 100):
            old.apply_batch(batch)
        old.mark_sent(r["seq"] for r in old.outbox_pending(100_000))
        for batch in batches(records[:880], 300):
            new.apply_batch(batch)
        was_open = {aid for aid, row in alert_rows(old).items() if row[3] == "open"}
        handed_at = new.offsets()
        hand_over_sql(new, old)
        for batch in batches(records[880:], 20):  # the live worker, after the swap
            new.apply_batch(batch)

        stats = settle_left_out(new, old, handed_at)

        now, last = alert_rows(new), last_messages(new)
        assert stats["left_out_persons"] > 0 and stats["left_out_changes_queued"] > 0
        assert stats["left_out_withdrawn_queued"] > 0
        for aid, (_rule, severity, _person, status, event_ids) in now.items():
            assert (last[aid]["severity"], last[aid]["status"], last[aid]["event_ids"]) == (severity, status, event_ids)
        for aid in was_open - set(now):
            assert last[aid]["status"] == "resolved" and last[aid]["withdrawn"] is True
        assert settle_left_out(new, old, handed_at)["left_out_changes_queued"] == 0  # settled: nothing more
    finally:
        old.close()
        new.close()
