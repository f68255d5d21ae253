"""A delivery cancelled after its worker claimed it (``DELETE /api/webhooks/{id}``, ``careledger
forget``) is not POSTed: the worker sent its claimed batch from memory, the person's alert and
hazard included, for as long as the batch lasted.  The one POST already in flight when the cancel
commits still ends; if it is answered 2xx the log says ``delivered``, not ``cancelled``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from projections.audit_tables import audit_log
from projections.webhook_store import WebhookStore, webhook_deliveries
from projections.webhooks.deliverer import Subscription, SubscriptionWorker
from projections.webhooks.poster import Attempt
from projections.webhooks.queue import DeliveryQueue
from projections.webhooks.signing import RetryPolicy

POLICY = RetryPolicy(base_delay_s=0.02, max_delay_s=0.1, max_age_s=60.0, timeout_s=0.5)


class CancellingPoster:
    """Answers 200 to every POST; during the first one, ``cancel`` runs (the API or forget)."""

    def __init__(self, cancel: Callable[[], Any]) -> None:
        self.cancel = cancel
        self.posted: list[str] = []

    def post(self, url: str, subscription_id: str, secret: str, delivery: dict[str, Any]) -> Attempt:
        if not self.posted:
            self.cancel()
        self.posted.append(delivery["delivery_id"])
        return Attempt(True, 200, None)


def body(seq: int) -> str:
    return json.dumps({"alert_id": f"A{seq}", "rule": "visit_hazard", "person_id": "p-erased",
                       "hazard": "abuse_or_neglect", "outbox_seq": seq}, separators=(",", ":"))


@pytest.mark.parametrize("how", ["delete", "forget"])
def test_rows_cancelled_after_the_claim_are_not_posted(store: WebhookStore, how: str) -> None:
    sub = store.create("http://127.0.0.1:9/hook")
    sid = sub["subscription_id"]
    queue = DeliveryQueue(store.engine)
    queue.enqueue([{"delivery_id": f"d{i}", "subscription_id": sid, "alert_id": f"A{i}", "outbox_seq": i,
                    "body": body(i)} for i in range(1, 6)])
    worker = SubscriptionWorker(Subscription(sid, sub["url"], sub["secret"], None, None), queue, POLICY, batch=5)
    lease_s = worker.lease_s()
    leased_until = time.monotonic() + lease_s
    claimed = queue.claim(sid, limit=5, lease_s=lease_s)
    assert len(claimed) == 5
    poster = CancellingPoster(lambda: store.delete(sid) if how == "delete" else queue.forget("p-erased"))
    worker._deliver(poster, claimed, leased_until)  # type: ignore[arg-type]
    with store.engine.connect() as conn:
        status = dict(conn.execute(select(webhook_deliveries.c.delivery_id, webhook_deliveries.c.status)).all())
        audited = conn.execute(select(audit_log.c.query, audit_log.c.status)).all()
    # only the POST in flight when the cancel committed was sent, and the log says it was delivered
    assert (poster.posted, status) == (["d1"], {"d1": "delivered", "d2": "cancelled", "d3": "cancelled",
                                                "d4": "cancelled", "d5": "cancelled"})
    # the claim audited all five ahead; the four never sent leave no row, the one sent has its answer
    assert audited == [("delivery_id=d1", 200)]


def test_a_row_claimed_again_by_another_deliverer_is_not_posted(store: WebhookStore) -> None:
    """Only rows still leased by this claim are sent: a lease that ran out and was taken by another
    deliverer process belongs to that one."""
    queue = DeliveryQueue(store.engine)
    queue.enqueue([{"delivery_id": "d1", "subscription_id": "wh_1", "alert_id": "A1", "outbox_seq": 1,
                    "body": body(1)}])
    mine = queue.claim("wh_1", limit=1, lease_s=0.0)
    time.sleep(0.01)
    theirs = queue.claim("wh_1", limit=1, lease_s=60.0)
    assert [r["delivery_id"] for r in theirs] == ["d1"]
    assert queue.still_pending(["d1"], mine[0]["lease_until"]) == set()
    assert queue.still_pending(["d1"], theirs[0]["lease_until"]) == {"d1"}
