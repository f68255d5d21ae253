"""Every webhook POST is a disclosure of person-level data to a subscriber: it is written to the audit
log under the person, in the same transaction as the attempt's outcome, so ``/api/audit?person_id=``
answers "who received this person's data" as well as "who read it"."""

from __future__ import annotations

import time
from pathlib import Path

from careledger.settings import Settings
from projections.api.auth import TokenStore
from projections.webhook_store import WebhookStore, sql_engine
from projections.webhooks.deliverer import Deliverer
from projections.webhooks.queue import DeliveryQueue, Disclosure, Outcome
from projections.webhooks.receiver import Receiver
from tests.unit.projections.webhooks.test_deliverer import FAST, alert, dead_url, records, wait_until


def check_outcomes_and_their_audit_rows_are_one_write(url: str) -> None:
    """``DeliveryQueue.record``: each POST's audit row is written with its outcome; an attempt
    without a POST (given up unsent) writes none.  Runs on SQLite here and on PostgreSQL in
    tests/integration/test_webhook_queue_pg.py."""
    engine = sql_engine(url)
    tokens = TokenStore(url)
    try:
        queue = DeliveryQueue(engine)
        queue.migrate()
        queue.enqueue([{"delivery_id": f"d{i}", "subscription_id": "wh_1", "alert_id": f"A{i}", "outbox_seq": i,
                        "body": "{}"} for i in range(3)])
        done = queue.record([
            Outcome("d0", 200, posted=Disclosure("wh_1", "p-zero")),
            Outcome("d1", None, "ConnectError", posted=Disclosure("wh_1", "p-one")),
            Outcome("d2", None, "gave up: older than the maximum age"),  # never POSTed: nothing disclosed
        ])
        assert done == {"d0"}
        rows = {r["person_id"]: (r["status"], r["query"]) for r in tokens.audit_rows(limit=10)["items"]}
        assert rows == {"p-zero": (200, "delivery_id=d0"), "p-one": (0, "delivery_id=d1")}
    finally:
        tokens.close()
        engine.dispose()


def test_outcomes_and_their_audit_rows_are_one_write_on_sqlite(tmp_path: Path) -> None:
    check_outcomes_and_their_audit_rows_are_one_write(f"sqlite:///{tmp_path / 'webhooks.sqlite3'}")


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
