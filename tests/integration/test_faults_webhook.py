"""A dead and a black-hole webhook subscriber do not slow the SQL processor.

Session broker and the test's own topics; nothing is killed.  Two subscriptions receive every alert:
one URL refuses connections (dead), the other accepts them and never answers (a black hole: each
attempt waits out the deliverer's HTTP timeout).  ``careledger deliver-webhooks`` runs throughout.

The same events are first processed by a SQL worker with no deliverer running (the baseline), then by
a second worker (own group, own store) while the deliverer struggles with those subscribers.  The test
asserts the decoupling, not a duration (speed belongs in bench/): the second worker caught up completely
while the subscribers' deliveries were still pending, so the processor never waited for them.  Both
catch-up times are recorded in the reliability report for a reader to compare.
Design: processors publish alerts to Kafka through the outbox; the deliverer is its own process with a
bounded claim per subscriber (docs/alert-delivery.md), so the only coupling is the alerts topic.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from projections.webhook_store import WebhookStore
from tests.support.pipeline import REPO_ROOT, open_test_store, publish, wait_caught_up, worker
from tests.support.reliability import record, sample_events
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration


def _black_hole() -> tuple[socket.socket, list[socket.socket]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # never read, never answered

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def _catch_up(settings, name: str, total: int) -> float:  # noqa: ANN001
    url = f"sqlite:///{settings.home / (name + '.sqlite3')}"
    store = open_test_store(settings, url)
    started = time.monotonic()
    w = worker(settings, "sql", url, name).start()
    try:
        wait_caught_up(settings, {name: store}, expected_end=total, timeout=600, workers=[w])
        return time.monotonic() - started
    finally:
        w.stop()
        store.close()


def test_dead_webhook_subscribers_do_not_slow_the_sql_processor(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = sample_events(persons=1500, seed=28)
    publish(settings, events)
    baseline_s = _catch_up(settings, "baseline", len(events))

    hole, held = _black_hole()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connection refused
    hooks = WebhookStore.from_settings(settings)
    subs = [hooks.create(f"http://127.0.0.1:{hole.getsockname()[1]}/hook", start_after_seq=0)["subscription_id"],
            hooks.create(f"http://127.0.0.1:{dead_port}/hook", start_after_seq=0)["subscription_id"]]
    log_path = settings.home / "logs" / "deliverer.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        deliverer = subprocess.Popen([sys.executable, "-m", "careledger.cli", "deliver-webhooks", "--timeout", "5"],
                                     cwd=REPO_ROOT, env={**os.environ, **settings.to_env()}, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
    try:
        hooked_s = _catch_up(settings, "hooked", len(events))
        from projections.webhooks.queue import DeliveryQueue

        # the processor is done; the deliverer (its own process, reading the alerts topic from the
        # start) may still be joining its group on a busy machine: give it time to queue deliveries
        queue = DeliveryQueue(hooks.engine)
        deadline = time.monotonic() + 90
        while True:
            pending = {sub: queue.pending_count(sub) for sub in subs}
            if sum(pending.values()) > 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert deliverer.poll() is None, log_path.read_text()[-3000:]
    finally:
        deliverer.terminate()
        try:
            deliverer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            deliverer.kill()
        hole.close()
        for conn in held:
            conn.close()
    record("fault", "Dead and black-hole webhook subscribers while the SQL processor catches up",
           claim="SQL catch-up of {events} events: {baseline_s:.0f} s without webhooks, {with_dead_subscribers_s:.0f} s "
                 "with a dead and a black-hole subscriber ({pending_deliveries} deliveries still pending)",
           events=len(events), baseline_s=round(baseline_s, 1), with_dead_subscribers_s=round(hooked_s, 1),
           pending_deliveries=sum(pending.values()), black_hole_connections=len(held))
    assert sum(pending.values()) > 0, "no delivery was pending once the processor caught up: it proves nothing"
