"""Every webhook POST is a disclosure of person-level data to a subscriber: it is written to the audit
log under the person *before* the POST (in the claim's transaction) and gets the answer with the
attempt's outcome, so ``/api/audit?person_id=`` answers "who received this person's data" as well
as "who read it" - also for a POST whose process died before it could record the answer."""

from __future__ import annotations

import json
import time
from pathlib import Path

from careledger.settings import Settings
from projections.api.auth import TokenStore
from projections.webhook_store import WebhookStore, sql_engine
from projections.webhooks.deliverer import Deliverer
from projections.webhooks.queue import DeliveryQueue, Outcome
from projections.webhooks.receiver import Receiver
from tests.unit.projections.webhooks.test_deliverer import FAST, alert, dead_url, records, wait_until


def _audited(tokens: TokenStore) -> dict[str, tuple[int, str]]:
    return {r["person_id"]: (r["status"], r["query"]) for r in tokens.audit_rows(limit=10)["items"]}


def check_each_claim_is_audited_before_its_post(url: str) -> None:
    """``DeliveryQueue.claim`` writes an audit row (no answer yet) for each claimed delivery that
    names a person; ``record`` gives each POST's row its answer and deletes the row of an attempt
    without a POST (given up unsent).  Runs on SQLite here and on PostgreSQL in
    tests/integration/test_webhook_queue_pg.py."""
    engine = sql_engine(url)
    tokens = TokenStore(url)
    try:
        queue = DeliveryQueue(engine)
        queue.migrate()
        persons = ["p-zero", "p-one", "p-two", None]
        queue.enqueue([{"delivery_id": f"d{i}", "subscription_id": "wh_1", "alert_id": f"A{i}", "outbox_seq": i,
                        "body": json.dumps({"alert_id": f"A{i}", "person_id": p} if p else {})}
                       for i, p in enumerate(persons)])
        claimed = {r["delivery_id"]: r for r in queue.claim("wh_1", limit=10, lease_s=60)}
        assert claimed["d3"]["audit_id"] is None  # names nobody: nothing to audit
        # before any POST: written ahead, no answer yet
        assert _audited(tokens) == {"p-zero": (0, "delivery_id=d0"), "p-one": (0, "delivery_id=d1"),
                                    "p-two": (0, "delivery_id=d2")}
        done = queue.record([
            Outcome("d0", 200, audit_id=claimed["d0"]["audit_id"], posted=True),
            Outcome("d1", None, "ConnectError", audit_id=claimed["d1"]["audit_id"], posted=True),
            # never POSTed: nothing disclosed, its row goes
            Outcome("d2", None, "gave up: older than the maximum age", audit_id=claimed["d2"]["audit_id"]),
        ])
        assert done == {"d0"}
        assert _audited(tokens) == {"p-zero": (200, "delivery_id=d0"), "p-one": (0, "delivery_id=d1")}
    finally:
        tokens.close()
        engine.dispose()


def check_a_post_whose_answer_was_never_recorded_stays_audited(url: str) -> None:
    """The deliverer POSTs a claimed row and dies before recording the answer; the row is then
    cancelled (``careledger forget``) and never sent again.  The audit row was written with the
    outcome before 2026-12-04: this POST was in no audit row at all."""
    engine = sql_engine(url)
    tokens = TokenStore(url)
    try:
        queue = DeliveryQueue(engine)
        queue.migrate()
        queue.enqueue([{"delivery_id": "d1", "subscription_id": "wh_1", "alert_id": "A1", "outbox_seq": 1,
                        "body": json.dumps({"alert_id": "A1", "person_id": "p-gone"})}])
        assert len(queue.claim("wh_1", limit=1, lease_s=60)) == 1
        # ... the POST is made, the process dies before ``record`` ...
        assert queue.forget("p-gone")["webhook_deliveries_cancelled"] == 1
        assert queue.claim("wh_1", limit=1, lease_s=60) == []  # never sent again
        rows = tokens.audit_rows(person_id="p-gone")["items"]
        assert [(r["token_name"], r["role"], r["method"], r["status"], r["query"]) for r in rows] == [
            ("webhook:wh_1", "subscriber", "POST", 0, "delivery_id=d1")]
    finally:
        tokens.close()
        engine.dispose()


def test_each_claim_is_audited_before_its_post_on_sqlite(tmp_path: Path) -> None:
    check_each_claim_is_audited_before_its_post(f"sqlite:///{tmp_path / 'webhooks.sqlite3'}")


def test_a_post_whose_answer_was_never_recorded_stays_audited_on_sqlite(tmp_path: Path) -> None:
    check_a_post_whose_answer_was_never_recorded_stays_audited(f"sqlite:///{tmp_path / 'webhooks.sqlite3'}")


def test_each_post_is_audited_under_its_person_with_the_answer(settings: Settings, store: WebhookStore) -> None:
    tokens = TokenStore(settings.sql_url)
    with Receiver(fail_first=1) as receiver:
        sub = store.create(receiver.url)
        receiver.state.secrets.append(sub["secret"])
        dead = store.create(dead_url())
        deliverer = Deliverer(settings, store, FAST, batch=5)
        deliverer.refresh()
        try:
            assert deliverer.handle(records([alert(1), alert(2)])) == 4
            assert receiver.wait_for(2, timeout=30)
            wait_until(lambda: store.deliveries(sub["subscription_id"], status="delivered")["total"] == 2)
            wait_until(lambda: store.deliveries(dead["subscription_id"])["items"][0]["attempts"] >= 1)
            time.sleep(0.2)
        finally:
            deliverer.stop_workers(timeout=5)
    rows = tokens.audit_rows(person_id="p1")["items"]
    to_receiver = [(r["token_name"], r["role"], r["method"], r["status"]) for r in rows
                   if r["path"] == f"/api/webhooks/{sub['subscription_id']}"]
    # the first POST answered 503 (the receiver may still have read it), the second 2xx
    assert sorted(to_receiver, key=lambda r: r[3]) == [
        (f"webhook:{sub['subscription_id']}", "subscriber", "POST", 200),
        (f"webhook:{sub['subscription_id']}", "subscriber", "POST", 503)]
    to_dead = [r for r in rows if r["path"] == f"/api/webhooks/{dead['subscription_id']}"]
    assert to_dead and {r["status"] for r in to_dead} == {0}  # no answer: audited as attempted
    assert all(r["query"].startswith("delivery_id=") for r in rows)
    # each row names the delivery it audits: p1's rows and p2's name different deliveries
    of_p2 = {r["query"] for r in tokens.audit_rows(person_id="p2")["items"]}
    assert of_p2 and not of_p2 & {r["query"] for r in rows}
    tokens.close()
