"""No subscription URL and no unexpected error kills a deliverer's worker thread: a URL httpx
cannot use (``http://1.2.3.999/``: InvalidURL, ``http://xn--zz.example/``: IDNAError) made every
POST raise, the worker thread died on each claim and its rows stayed pending, never attempted."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from careledger.settings import Settings
from projections.webhook_store import WebhookStore
from projections.webhooks.deliverer import Deliverer, SubscriptionWorker
from projections.webhooks.poster import Poster
from projections.webhooks.receiver import Receiver
from projections.webhooks.signing import RetryPolicy, delivery_id, new_secret

FAST = RetryPolicy(base_delay_s=0.02, max_delay_s=0.1, max_age_s=60.0, timeout_s=0.5)
DELIVERY = {"delivery_id": delivery_id("wh_t", "A1", 1), "body": '{"alert_id":"A1","outbox_seq":1}'}


def alert(seq: int) -> Any:
    value = json.dumps({"alert_id": f"A{seq}", "rule": "visit_hazard", "person_id": f"p{seq}", "town": "锦屏街道",
                        "outbox_seq": seq}).encode()
    return SimpleNamespace(value=value, headers=[])


def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(("url", "error"), [("http://1.2.3.999/hook", "InvalidURL"),
                                            ("http://xn--zz.example/hook", "IDNAError")])
def test_a_url_httpx_cannot_use_is_a_failed_attempt(url: str, error: str) -> None:
    with Poster(0.5) as poster:
        attempt = poster.post(url, "wh_t", new_secret(), DELIVERY)
    assert not attempt.ok and attempt.status is None
    assert attempt.error is not None and error in attempt.error and "not sent" in attempt.error


def test_a_bad_url_is_retried_and_its_worker_lives_on(settings: Settings, store: WebhookStore) -> None:
    dead: list[str] = []
    hook, threading.excepthook = threading.excepthook, lambda a: dead.append(f"{a.thread.name}: {a.exc_value!r}")
    bad = store.create("http://1.2.3.999/hook")  # stored before the API checked URLs
    deliverer = Deliverer(settings, store, FAST)
    deliverer.refresh()
    try:
        deliverer.handle([alert(1)])
        sid = bad["subscription_id"]
        wait_until(lambda: any(i["attempts"] >= 2 for i in store.deliveries(sid)["items"]) or dead)
    finally:
        deliverer.stop_workers(timeout=5)
        threading.excepthook = hook
    assert not dead
    item = store.deliveries(sid)["items"][0]
    assert item["status"] == "pending" and "InvalidURL" in item["last_error"]


def test_an_unexpected_error_of_a_batch_is_logged_and_the_worker_goes_on(
        settings: Settings, store: WebhookStore, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real_post, calls = Poster.post, []

    def post_failing_once(self: Poster, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real_post(self, *args, **kwargs)

    monkeypatch.setattr(Poster, "post", post_failing_once)
    monkeypatch.setattr(SubscriptionWorker, "lease_s", lambda self: 1.0)  # the failed batch's rows come back soon
    with Receiver() as receiver, caplog.at_level("ERROR", logger="careledger.webhooks"):
        sub = store.create(receiver.url)
        receiver.state.secrets.append(sub["secret"])
        deliverer = Deliverer(settings, store, FAST)
        deliverer.refresh()
        try:
            deliverer.handle([alert(1), alert(2)])
            assert receiver.wait_for(2, timeout=20)
            assert deliverer.workers[sub["subscription_id"]].is_alive()
        finally:
            deliverer.stop_workers(timeout=5)
    assert any("RuntimeError" in r.exc_text or "a bug" in (r.exc_text or "") for r in caplog.records if r.exc_text)
