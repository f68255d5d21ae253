"""The deliverer without Kafka: subscriptions in SQLite, consumer records fed by hand, real HTTP
receivers on 127.0.0.1 (one failing the first tries, one too slow, one dead)."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kafka.errors as kafka_errors
import pytest
from sqlalchemy import event, select

from careledger.settings import Settings
from projections.webhook_store import SecretBox, WebhookStore, webhook_deliveries, webhook_subscriptions
from projections.webhooks import deliverer as deliverer_module
from projections.webhooks.deliverer import Deliverer, Subscription, commit_or_reread, deliveries_for
from projections.webhooks.queue import DeliveryQueue, Outcome
from projections.webhooks.receiver import Receiver
from projections.webhooks.signing import RetryPolicy, delivery_id

FAST = RetryPolicy(base_delay_s=0.02, max_delay_s=0.1, max_age_s=60.0, timeout_s=0.5)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env(), home=tmp_path / "home",
                               sql_url=f"sqlite:///{tmp_path / 'projections.sqlite3'}")


@pytest.fixture
def store(settings: Settings) -> Iterator[WebhookStore]:
    s = WebhookStore.from_settings(settings)
    s.migrate()
    yield s
    s.engine.dispose()


def alert(seq: int, town: str = "锦屏街道", rule: str = "visit_hazard") -> bytes:
    return json.dumps({"alert_id": f"A{seq:04d}", "rule": rule, "severity": "high", "person_id": f"p{seq}",
                       "status": "open", "event_ids": [f"e{seq}"], "detected_at": "2024-04-01T10:00:00+08:00",
                       "town": town, "hazard": "unsafe_housing", "outbox_seq": seq},
                      ensure_ascii=False).encode()


def records(values: list[bytes], traceparent: str | None = None) -> list[Any]:
    """Consumer records as kafka-python gives them (value, headers)."""
    headers = [("traceparent", traceparent.encode())] if traceparent else []
    return [SimpleNamespace(value=v, headers=headers) for v in values]


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody"


def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_secret_is_stored_encrypted(store: WebhookStore, settings: Settings) -> None:
    created = store.create("http://127.0.0.1:9/x", rules=["visit_hazard"], created_by="root")
    secret = created["secret"]
    assert secret.startswith("whsec_") and store.get(created["subscription_id"]).get("secret") is None
    with store.engine.connect() as conn:
        row = conn.execute(select(webhook_subscriptions)).one()._mapping
    assert secret not in json.dumps(dict(row), default=str)
    assert store.active_with_secrets()[0]["secret"] == secret
    # another deployment key cannot open it
    with pytest.raises(RuntimeError, match="webhook-key"):
        SecretBox(b"another key").open(row["secret_enc"])
    key_file = settings.secrets_dir / "webhook-key"
    assert key_file.stat().st_mode & 0o077 == 0


def test_filters_and_start_position() -> None:
    sub = Subscription("wh_1", "http://x", "s", frozenset({"visit_hazard"}), frozenset({"A"}), start_after_seq=4)
    assert sub.matches({"rule": "visit_hazard", "town": "A", "outbox_seq": 5})
    assert not sub.matches({"rule": "duplicate_payment", "town": "A", "outbox_seq": 5})
    assert not sub.matches({"rule": "visit_hazard", "town": "B", "outbox_seq": 5})
    assert not sub.matches({"rule": "visit_hazard", "town": "A", "outbox_seq": 4})  # before it existed
    every = Subscription("wh_2", "http://x", "s", None, None)
    rows = deliveries_for([sub, every], alert(5, town="A"))
    assert [r["delivery_id"] for r in rows] == [delivery_id("wh_1", "A0005", 5), delivery_id("wh_2", "A0005", 5)]
    assert rows[0]["body"] == alert(5, town="A").decode()
    assert deliveries_for([every], b"not json") == []


def test_subscription_starts_after_the_current_outbox_end(settings: Settings, store: WebhookStore) -> None:
    from processors.domain.model import Consumed
    from processors.domain.rules_config import default_rules
    from projections import open_store
    from tests.unit.projections.api.conftest import district

    before = store.create("http://127.0.0.1:9/x")
    assert before["start_after_seq"] == 0  # no outbox yet
    sql = open_store(settings.sql_url, default_rules(), topic=settings.topics.events)
    sql.migrate()
    sql.apply_batch([Consumed(0, i, e) for i, e in enumerate(district())])
    end = len(sql.outbox_pending())
    assert end > 0 and store.create("http://127.0.0.1:9/y")["start_after_seq"] == end
    sql.close()


def test_queue_transitions_are_idempotent(store: WebhookStore) -> None:
    q = DeliveryQueue(store.engine)
    row = {"delivery_id": "d1", "subscription_id": "wh_1", "alert_id": "A1", "outbox_seq": 1, "body": "{}"}
    assert q.enqueue([row]) == 1
    assert q.enqueue([row]) == 0  # a Kafka redelivery of the same change
    claimed = q.claim("wh_1", limit=10, lease_s=30)
    assert [c["delivery_id"] for c in claimed] == ["d1"]
    assert q.claim("wh_1", limit=10, lease_s=30) == []  # leased: nobody else sends it meanwhile
    q.failed_attempt("d1", "HTTP 503", 503, datetime.now(UTC) - timedelta(seconds=1))
    again = q.claim("wh_1", limit=10, lease_s=30)
    assert again[0]["attempts"] == 1
    assert q.delivered("d1", 200)
    assert not q.delivered("d1", 200)  # never two successful deliveries of one id
    q.failed_attempt("d1", "late failure", 500, None)  # a stale attempt cannot undo it
    with store.engine.connect() as conn:
        got = conn.execute(select(webhook_deliveries)).one()._mapping
    assert (got["status"], got["attempts"], got["last_status"]) == ("delivered", 2, 200)


def test_deliver_with_retries_slow_and_dead_subscribers(settings: Settings, store: WebhookStore) -> None:
    with Receiver(fail_first=2) as flaky, Receiver(delay_s=2.0) as slow:
        sub = store.create(flaky.url)
        flaky.state.secrets.append(sub["secret"])
        town_a = store.create(flaky.url, towns=["锦屏街道"])
        flaky.state.secrets.append(town_a["secret"])
        slow_sub = store.create(slow.url)
        slow.state.secrets.append(slow_sub["secret"])
        dead = store.create(dead_url())
        time.sleep(0.01)
        deliverer = Deliverer(settings, store, FAST, batch=5)
        deliverer.refresh()
        try:
            values = [alert(i, town="锦屏街道" if i % 2 else "岳林街道") for i in range(1, 21)]
            started = time.monotonic()
            assert deliverer.handle(records(values)) == 20 + 10 + 20 + 20
            assert deliverer.handle(records(values[:5])) == 0  # redelivered by Kafka: no new rows
            assert flaky.wait_for(30, timeout=30), flaky.state.tries
            elapsed = time.monotonic() - started
        finally:
            deliverer.stop_workers(timeout=5)
        # the slow (2 s > 0.5 s timeout) and dead subscribers did not hold the others back
        assert elapsed < 10, elapsed
        state = flaky.state
        assert not state.duplicates and not state.bad_signatures
        assert all(n == 3 for n in state.tries.values())  # 2 failures, then success
        assert {r.body["outbox_seq"] for r in state.accepted} == set(range(1, 21))
        log = store.deliveries(sub["subscription_id"], status="delivered", limit=100)
        assert log["total"] == 20 and log["by_status"] == {"delivered": 20}
        assert {i["attempts"] for i in log["items"]} == {3}
        town_log = store.deliveries(town_a["subscription_id"])
        assert town_log["total"] == 10
        dead_log = store.deliveries(dead["subscription_id"])
        assert dead_log["by_status"].get("delivered", 0) == 0
        assert all(i["attempts"] >= 1 and "Connect" in (i["last_error"] or "") for i in dead_log["items"]
                   if i["attempts"])
        slow_log = store.deliveries(slow_sub["subscription_id"])
        assert slow_log["by_status"].get("delivered", 0) == 0
        assert any(re.search("Timeout|timed out", i["last_error"] or "") for i in slow_log["items"])


def test_a_claimed_batch_is_recorded_in_one_write(settings: Settings, store: WebhookStore) -> None:
    """Per POST, a write transaction waited for the read model's writer on SQLite (the deliverer
    managed ~20 deliveries/s next to a busy worker): a batch's outcomes are written together."""
    writes: list[str] = []
    event.listen(store.engine, "begin", lambda conn: writes.append(
        conn.get_execution_options().get("sqlite_begin", "read")))
    with Receiver() as receiver:
        sub = store.create(receiver.url)
        receiver.state.secrets.append(sub["secret"])
        deliverer = Deliverer(settings, store, FAST, batch=50)
        deliverer.refresh()
        try:
            writes.clear()
            assert deliverer.handle(records([alert(i) for i in range(1, 41)])) == 40
            assert receiver.wait_for(40, timeout=30)
            deadline = time.monotonic() + 10
            while store.deliveries(sub["subscription_id"], status="delivered")["total"] < 40:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            deliverer.stop_workers(timeout=5)
    # one write to enqueue, then per claimed batch one claim and one record of its outcomes (a slow
    # machine may record a batch in parts, every RECORD_EVERY_S, and claim once more when idle): a
    # handful of writes for 40 deliveries, where one write per POST made it 44
    assert writes.count("immediate") <= 10, writes
    log = store.deliveries(sub["subscription_id"], limit=100)
    assert log["by_status"] == {"delivered": 40} and {i["attempts"] for i in log["items"]} == {1}


def test_queue_records_mixed_outcomes_together(store: WebhookStore) -> None:
    q = DeliveryQueue(store.engine)
    q.enqueue([{"delivery_id": f"d{i}", "subscription_id": "wh_1", "alert_id": f"A{i}", "outbox_seq": i,
                "body": "{}"} for i in range(3)])
    later = datetime.now(UTC) + timedelta(minutes=5)
    done = q.record([Outcome("d0", 204), Outcome("d1", 503, "HTTP 503", later), Outcome("d2", None, "gave up")])
    assert done == {"d0"}
    assert q.record([Outcome("d0", 200)]) == set()  # never delivered twice
    with store.engine.connect() as conn:
        rows = {r.delivery_id: (r.status, r.attempts, r.last_status) for r in conn.execute(select(webhook_deliveries))}
    assert rows == {"d0": ("delivered", 1, 204), "d1": ("pending", 1, 503), "d2": ("failed", 1, None)}


def test_give_up_after_max_age(settings: Settings, store: WebhookStore) -> None:
    sub = store.create(dead_url())
    policy = RetryPolicy(base_delay_s=0.05, max_delay_s=0.1, max_age_s=2.0, timeout_s=0.5)
    deliverer = Deliverer(settings, store, policy)
    deliverer.refresh()
    try:
        deliverer.handle(records([alert(1)]))
        wait_until(lambda: store.deliveries(sub["subscription_id"])["by_status"].get("failed") == 1)
    finally:
        deliverer.stop_workers(timeout=5)
    item = store.deliveries(sub["subscription_id"])["items"][0]
    assert item["status"] == "failed" and item["attempts"] >= 2 and item["next_attempt_at"] is None


def test_deleting_a_subscription_cancels_pending(settings: Settings, store: WebhookStore) -> None:
    sub = store.create(dead_url())
    q = DeliveryQueue(store.engine)
    q.enqueue([{"delivery_id": "d1", "subscription_id": sub["subscription_id"], "alert_id": "A1",
                "outbox_seq": 1, "body": "{}"}])
    gone = store.delete(sub["subscription_id"])
    assert gone is not None and gone["active"] is False
    assert store.deliveries(sub["subscription_id"])["by_status"] == {"cancelled": 1}
    assert store.active_with_secrets() == []
    assert store.delete("wh_unknown") is None


def test_forget_erases_a_persons_deliveries_and_cancels_the_pending_ones(store: WebhookStore) -> None:
    """``careledger forget``: the delivery log keeps rows (what was sent when) but no alert body
    of the forgotten person; their pending deliveries are never sent, other persons' untouched."""
    q = DeliveryQueue(store.engine)
    compact = alert(7).decode().replace(": ", ":").replace(", ", ",").encode()  # the relay's own form
    q.enqueue([
        {"delivery_id": "d1", "subscription_id": "wh_1", "alert_id": "A0007", "outbox_seq": 7, "body": compact.decode()},
        {"delivery_id": "d2", "subscription_id": "wh_2", "alert_id": "A0007", "outbox_seq": 7,
         "body": alert(7).decode()},
        {"delivery_id": "d3", "subscription_id": "wh_1", "alert_id": "A0070", "outbox_seq": 70,
         "body": alert(70).decode()},  # p70: "p7" is a prefix of its id, not its id
    ])
    assert q.delivered("d1", 200)
    assert q.forget("p7") == {"webhook_deliveries_erased": 2, "webhook_deliveries_cancelled": 1}
    with store.engine.connect() as conn:
        rows = {r.delivery_id: r for r in conn.execute(select(webhook_deliveries))}
    assert json.loads(rows["d1"].body) == {"alert_id": "A0007", "erased": True} and rows["d1"].status == "delivered"
    assert json.loads(rows["d2"].body) == {"alert_id": "A0007", "erased": True} and rows["d2"].status == "cancelled"
    assert rows["d3"].body == alert(70).decode() and rows["d3"].status == "pending"
    assert not q.delivered("d2", 200)  # only the claim whose POST was in flight could (test_cancel_in_flight.py)
    assert q.forget("p7") == {"webhook_deliveries_erased": 0, "webhook_deliveries_cancelled": 0}  # nothing left


def test_alerts_of_forgotten_persons_still_on_the_topic_are_not_delivered() -> None:
    subs = [Subscription("wh_1", "http://x", "s", None, None)]
    assert [d["alert_id"] for d in deliveries_for(subs, alert(1), forgotten={"p2"})] == ["A0001"]
    assert deliveries_for(subs, alert(2), forgotten={"p2"}) == []


class _Consumer:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize("error", [
    kafka_errors.RebalanceInProgressError("rebalancing"),
    kafka_errors.CommitFailedError("fenced"),
    kafka_errors.NotCoordinatorError("moved"),  # retriable
])
def test_a_commit_refused_by_the_group_leaves_the_batch_to_be_re_read(error):
    consumer = _Consumer(error)
    assert commit_or_reread(consumer) is False
    assert consumer.commits == 1


def test_a_commit_that_succeeds_or_fails_for_good_is_not_hidden():
    assert commit_or_reread(_Consumer(None)) is True
    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        commit_or_reread(_Consumer(kafka_errors.TopicAuthorizationFailedError("no")))


class _FlakyQueue:
    """A delivery queue whose enqueue fails with ``errors`` first (then stores nothing, answers 1)."""

    def __init__(self, errors: list[BaseException], deliverer: Deliverer | None = None, stop_after: int = 0) -> None:
        self.errors, self.calls, self.deliverer, self.stop_after = errors, 0, deliverer, stop_after

    def enqueue(self, rows: list[dict[str, Any]]) -> int:
        self.calls += 1
        if self.deliverer is not None and self.calls >= self.stop_after:
            self.deliverer.stop()  # a safety net: the old loop retried *any* error until stopped
        if self.errors:
            raise self.errors.pop(0)
        return len(rows)


def _deliverer_with(settings: Settings, store: WebhookStore, queue: _FlakyQueue) -> Deliverer:
    deliverer = Deliverer(settings, store, FAST)
    deliverer.subscriptions = [Subscription("wh_1", "http://127.0.0.1:9/x", "whsec_x", None, None)]
    deliverer.queue = queue  # type: ignore[assignment]
    return deliverer


def test_a_busy_database_is_waited_out_with_the_shared_backoff(settings: Settings, store: WebhookStore,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy.exc import OperationalError

    queue = _FlakyQueue([OperationalError("INSERT", {}, Exception("database is locked"))] * 2)
    deliverer = _deliverer_with(settings, store, queue)
    with caplog.at_level("WARNING", logger="careledger.webhooks"):
        assert deliverer.handle(records([alert(1)])) == 1
    assert queue.calls == 3
    assert [m for m in caplog.messages if "retrying in" in m and "database is locked" in m]


def test_an_error_that_is_not_transient_is_not_retried(settings: Settings, store: WebhookStore) -> None:
    queue = _FlakyQueue([ValueError("a bug, not a busy database")] * 10, stop_after=4)
    deliverer = _deliverer_with(settings, store, queue)
    queue.deliverer = deliverer
    with pytest.raises(ValueError):
        deliverer.handle(records([alert(1)]))
    assert queue.calls == 1  # raised at once: the supervisor restarts the deliverer, the batch is re-read


def test_warnings_are_delivered_with_the_same_filters() -> None:
    """Issue 14.4: careledger.warnings messages (keyed by warning_id) match rule and town filters."""
    subs = [Subscription("s-all", "http://x", "k", None, None),
            Subscription("s-visits", "http://x", "k", frozenset({"visit_overdue"}), frozenset({"锦屏街道"}))]
    due = json.dumps({"kind": "warning.due", "warning_id": "W0123456789abcdef0123", "rule": "visit_overdue",
                      "person_id": "p1", "town": "锦屏街道", "since": "2024-05-01", "outbox_seq": 7}).encode()
    other = json.dumps({"kind": "warning.due", "warning_id": "W1123456789abcdef0123", "rule": "need_unmet",
                        "person_id": "p2", "town": "锦屏街道", "since": "2024-05-01", "outbox_seq": 8}).encode()
    assert sorted(r["subscription_id"] for r in deliveries_for(subs, due)) == ["s-all", "s-visits"]
    assert [r["alert_id"] for r in deliveries_for(subs, due)] == ["W0123456789abcdef0123"] * 2
    assert [r["subscription_id"] for r in deliveries_for(subs, other)] == ["s-all"]
    assert deliveries_for(subs, due, forgotten={"p1"}) == []
    assert deliveries_for(subs, b'{"kind": "warning.due", "outbox_seq": 9}') == []


def test_each_post_continues_the_trace_of_its_kafka_message(settings: Settings, store: WebhookStore) -> None:
    relayed = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # the relay's "publish alert" span
    with Receiver(fail_first=1) as receiver:
        sub = store.create(receiver.url)
        receiver.state.secrets.append(sub["secret"])
        time.sleep(0.01)
        deliverer = Deliverer(settings, store, FAST, batch=5)
        deliverer.refresh()
        try:
            assert deliverer.handle(records([alert(1)], relayed)) == 1
            assert deliverer.handle(records([alert(2)], "00-garbage")) == 1  # ignored, not an error
            assert deliverer.handle(records([alert(3)])) == 1  # a message without a header
            assert receiver.wait_for(3, timeout=20), receiver.state.tries
        finally:
            deliverer.stop_workers(timeout=5)
    with store.engine.connect() as conn:
        stored = dict(conn.execute(select(webhook_deliveries.c.outbox_seq, webhook_deliveries.c.traceparent)).all())
    assert stored == {1: relayed, 2: None, 3: None}  # kept for every retry (only a valid one)
    got = {r.body["outbox_seq"]: r.traceparent for r in receiver.state.accepted}
    pattern = r"00-[0-9a-f]{32}-[0-9a-f]{16}-01"
    assert all(tp is not None and re.fullmatch(pattern, tp) for tp in got.values()), got
    assert got[1].split("-")[1] == relayed.split("-")[1] and got[1] != relayed  # a child span of the message's
    assert got[2].split("-")[1] != got[3].split("-")[1]  # no usable parent: each starts its own trace


def test_metrics_count_outcomes_latency_and_the_backlog(settings: Settings, store: WebhookStore) -> None:
    from careledger.metrics import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    with Receiver(fail_first=1) as receiver:
        ok = store.create(receiver.url)
        receiver.state.secrets.append(ok["secret"])
        dead = store.create(dead_url())
        time.sleep(0.01)
        sid, dead_sid = ok["subscription_id"], dead["subscription_id"]
        consumed = value("careledger_webhook_messages_consumed_total")
        deliverer = Deliverer(settings, store, FAST, batch=5)
        deliverer.refresh()
        try:
            assert deliverer.handle(records([alert(1), alert(2)])) == 4
            assert receiver.wait_for(2, timeout=20)
            wait_until(lambda: value("careledger_webhook_attempts_total", subscription=dead_sid, outcome="retry") >= 2)
        finally:
            deliverer.stop_workers(timeout=5)
        deliverer.measure_pending(every_s=0)
    assert value("careledger_webhook_messages_consumed_total") - consumed == 2
    assert value("careledger_webhook_attempts_total", subscription=sid, outcome="delivered") == 2
    assert value("careledger_webhook_attempts_total", subscription=sid, outcome="retry") == 2  # fail_first=1
    assert value("careledger_webhook_attempt_seconds_count", subscription=sid) == 4
    assert value("careledger_webhook_pending_deliveries", subscription=sid) == 0
    assert value("careledger_webhook_pending_deliveries", subscription=dead_sid) == 2  # still waiting
    assert value("careledger_webhook_subscriptions") == 2


@pytest.mark.parametrize("short", ["margin", "lease"])
def test_two_deliverers_never_send_a_claimed_row_twice(settings: Settings, store: WebhookStore,
                                                       monkeypatch: pytest.MonkeyPatch, short: str) -> None:
    """A lease that ran out while its claimed batch was still being sent (20 POSTs to a subscriber
    at its 5 s timeout against a 20 s lease) let a second deliverer process claim and send the same
    rows.  ``margin``: the lease now covers every POST of the batch at its timeout; ``lease``: even
    a lease too short for the batch (a database held up the writes) is not overrun - no POST starts
    that could end after it, and the rest is claimed again once the lease has ended."""
    # The POSTs take 0.25 s against a 1 s timeout: on a starved 2-core machine (the unit tests run
    # beside the integration tests) a 0.5 s timeout ran out now and then, the retry was a second
    # delivery, and a lease only 0.25 s longer than the last POST left too little time to record it.
    if short == "margin":
        monkeypatch.setattr(deliverer_module, "LEASE_MARGIN_S", 1.0)  # 8 x 1 s + 1 s: the batch takes ~2 s
    else:
        monkeypatch.setattr(deliverer_module.SubscriptionWorker, "lease_s", lambda self: 1.6)  # 3 POSTs a lease, 8 need 2 s
    policy = dataclasses.replace(FAST, timeout_s=1.0)
    other_store = WebhookStore.from_settings(settings)  # the second process's own connections
    with Receiver(delay_s=0.25) as slow:
        sub = store.create(slow.url)
        slow.state.secrets.append(sub["secret"])
        first, second = Deliverer(settings, store, policy, batch=8), Deliverer(settings, other_store, policy, batch=8)
        first.refresh()
        second.refresh()
        try:
            assert first.handle(records([alert(i) for i in range(1, 9)])) == 8
            assert slow.wait_for(8, timeout=30), slow.state.tries
            wait_until(lambda: store.deliveries(sub["subscription_id"], status="delivered")["total"] == 8)
            time.sleep(1.5)  # the second deliverer's next claims
        finally:
            first.stop_workers(timeout=5)
            second.stop_workers(timeout=5)
            other_store.engine.dispose()
    stats = [w.stats for d in (first, second) for w in d.workers.values()]
    assert not slow.state.duplicates, (slow.state.tries, stats)  # failures > 0: a timeout, then a retry
    assert sorted(slow.state.tries.values()) == [1] * 8
