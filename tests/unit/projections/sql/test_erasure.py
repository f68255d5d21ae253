"""Erasure and the outbox (projections/sql/erasure.py): a forgotten person's outbox rows are blanked,
not deleted, so their seqs are never handed out again."""

from __future__ import annotations

import copy
from pathlib import Path

from sqlalchemy import select

from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections.api.auth import TokenStore
from projections.sql import tables as t
from projections.sql.store import SqlStore
from tests.unit.projections.gen import Gen, batches, to_records


def test_a_change_after_a_forget_gets_a_seq_above_every_seq_seen_before(tmp_path: Path) -> None:
    """Before: the forgotten person's rows were the newest and were deleted; SQLite (INTEGER PRIMARY
    KEY, no AUTOINCREMENT) gave the next change the same seq, and an SSE client resuming from its
    Last-Event-ID - or a webhook subscription created after it - never saw that change."""
    store = SqlStore(f"sqlite:///{tmp_path / 'p.sqlite3'}", default_rules())
    store.migrate()
    try:
        events = Gen(seed=5, persons=60).stream(600)
        for batch in batches(to_records(events), 100):
            store.apply_batch(batch)
        last = store.outbox_after(0, 10**6)[-1]
        erased = last["message"]["person_id"]
        seen = last["seq"]  # an SSE client's Last-Event-ID
        store.mark_sent(r["seq"] for r in store.outbox_pending(10**6)[:-2])  # the relay is two rows behind

        done = store.forget(erased, "tomb-1")

        assert done["alert_outbox"] > 0
        assert store.outbox_last_seq() == seen  # the seqs stay taken
        assert store.outbox_after(0, 10**6)[-1]["seq"] < seen  # but nobody reads the blanked rows
        assert all(r["alert"].get("person_id") != erased for r in store.outbox_pending(10**6))  # nor relays them
        with store.engine.connect() as conn:
            bodies = conn.scalars(select(t.alert_outbox.c.body)).all()
        assert not any(erased in body for body in bodies)

        visit = next(e for e in events if e["type"] == "visit.completed" and e["payload"].get("hazards")
                     and e["person_id"] != erased)
        hazard = copy.deepcopy(visit)
        hazard["event_id"], hazard["payload"]["hazards"] = "ev-new-hazard", ["medical_emergency"]
        store.apply_batch([Consumed(0, 10**6, hazard)])

        after = store.outbox_after(seen, 500)
        assert after and all("ev-new-hazard" in r["message"]["event_ids"] for r in after)
    finally:
        store.close()


def test_a_forget_keeps_the_audit_log_of_who_read_the_person(tmp_path: Path) -> None:
    """The audit rows say who read the person's data (not the data): the record of processing
    survives the erasure, under the pseudonymous id (docs/privacy.md, "What still counts")."""
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    store = SqlStore(url, default_rules())
    store.migrate()
    tokens = TokenStore(url)
    try:
        events = Gen(seed=6, persons=20).stream(200)
        store.apply_batch(to_records(events))
        person = next(e["person_id"] for e in events if e["person_id"])
        tokens.audit(principal=None, method="GET", path=f"/api/persons/{person}/record", query=None,
                     person_id=person, status=200)
        tokens.audit(principal=None, method="GET", path="/api/alerts", query=None, person_id=None, status=200,
                     subjects=[person, "someone-else"])

        store.forget(person, "tomb-2")

        assert [row["path"] for row in tokens.audit_rows(person_id=person)["items"]] == [
            "/api/alerts", f"/api/persons/{person}/record"]
    finally:
        tokens.close()
        store.close()
