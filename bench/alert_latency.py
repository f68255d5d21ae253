"""Produce → subscriber latency of the three alert delivery paths (docs/alert-delivery.md).

Starts, on a temporary CARELEDGER_HOME: a private Kafka broker, a SQL processor (``careledger
process``), the API (``careledger serve``) and the webhook deliverer (``careledger deliver-webhooks``),
as ``make up`` does.  Subscribes three clients: a Kafka consumer (own group), an SSE client (admin
token) and a webhook receiver (http.server on 127.0.0.1).  After a warm-up it publishes ``--events``
hazard visits (one alert each) at a steady ``--rate`` and, per path, records when each alert arrives,
while ``--background`` other events per second (subsidy payments, no alert) stream through the
same worker.  Latency = arrival − the moment the visit event was handed to the producer.  Prints
median and p99 per path (issue 13's goal: p99 < 300 ms at 10 alerts/s inside 2,000 events/s).

    .venv/bin/python bench/alert_latency.py --events 300 --rate 10 --background 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer
from kafka.errors import CommitFailedError, RebalanceInProgressError

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from careledger.settings import Settings  # noqa: E402
from infra.kafka_broker import KafkaBroker, ensure_topics  # noqa: E402
from infra.process import free_port  # noqa: E402
from producers.publisher import EventPublisher  # noqa: E402
from projections.api.auth import ensure_admin_token  # noqa: E402
from projections.webhooks.receiver import Receiver  # noqa: E402

PATHS = ("kafka", "sse", "webhook")


def visit(i: int, run: str) -> dict[str, Any]:
    return {"event_id": f"{run}-v{i}", "type": "visit.completed", "version": 1,
            "occurred_at": "2024-04-01T10:00:00+08:00", "person_id": f"{run}-p{i}", "town": "锦屏街道",
            "village": None, "source": "bench",
            "payload": {"visit_kind": "home_visit", "visitor": "w1", "hazards": ["unsafe_housing"]}}


class Arrivals:
    """event_id → first arrival time, per path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[str, dict[str, float]] = {p: {} for p in PATHS}

    def record(self, path: str, alert: dict[str, Any], when: float | None = None) -> None:
        when = time.time() if when is None else when
        with self.lock:
            for event_id in alert.get("event_ids", []):
                self.at[path].setdefault(event_id, when)

    def count(self, path: str, ids: set[str]) -> int:
        with self.lock:
            return len(ids & self.at[path].keys())


def kafka_client(settings: Settings, arrivals: Arrivals, stop: threading.Event) -> None:
    consumer = KafkaConsumer(**settings.kafka_client_options(), group_id="bench-kafka", enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100, metadata_max_age_ms=5000)
    # join the group once the topic's partitions are known: a member that joins without them is
    # assigned nothing until its next metadata refresh (the deliverer does the same)
    while not consumer.partitions_for_topic(settings.topics.alerts) and not stop.is_set():
        time.sleep(0.2)
    consumer.subscribe([settings.topics.alerts])
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                now = time.time()
                for record in records:
                    arrivals.record("kafka", json.loads(record.value), now)
            try:
                consumer.commit()
            except (CommitFailedError, RebalanceInProgressError):
                pass  # the group is rebalancing; re-read records keep their first arrival (Arrivals.record)
    finally:
        consumer.close()


def sse_client(url: str, token: str, arrivals: Arrivals, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    last: str | None = None
    while not stop.is_set():
        if last is not None:
            headers["Last-Event-ID"] = last
        try:
            with httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as client, \
                    client.stream("GET", url + "/api/alerts/stream", headers=headers,
                                  params={} if last else {"last_event_id": 0}) as response:
                current: dict[str, str] = {}
                for line in response.iter_lines():
                    if stop.is_set():
                        return
                    if line == "":
                        if "data" in current:
                            arrivals.record("sse", json.loads(current["data"]))
                            last = current.get("id", last)
                        current = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        current[name] = value
        except httpx.HTTPError:
            time.sleep(0.5)


BACKGROUND_PERSONS = 50_000


def payment(i: int) -> dict[str, Any]:
    """The ``i``-th background payment: 50,000 persons paid in turn, one month per round, so that
    no background event raises an alert (the subscribers see the measured alerts, not a flood)."""
    month = i // BACKGROUND_PERSONS
    return {"event_id": f"bg-{i}", "type": "payment.disbursed", "version": 1,
            "occurred_at": "2024-04-05T10:00:00+08:00", "person_id": f"bg-p{i % BACKGROUND_PERSONS}",
            "town": "岳林街道", "village": None, "source": "bench",
            "payload": {"program": "living_subsidy", "amount_fen": 50_000,
                        "period": f"{2000 + month // 12}-{month % 12 + 1:02d}"}}


def background(settings: Settings, rate: float, stop: threading.Event, sent: list[int]) -> None:
    """``rate`` payments per second, in slices of 20 ms, until ``stop`` (one producer of its own)."""
    publisher = EventPublisher(settings)
    started, i = time.monotonic(), 0
    try:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            while i < due:
                publisher.publish(payment(i))
                i += 1
            publisher.flush()
            sent[0] = i
            time.sleep(0.02)
    finally:
        publisher.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def wait_for(check: Any, timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="hazard visits to publish (default 300)")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (default 10)")
    parser.add_argument("--background", type=float, default=0.0,
                        help="other events per second streaming meanwhile (default 0; issue 13: 2000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs) afterwards")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="careledger-bench-"))
    kafka_port = free_port()
    settings = dataclasses.replace(
        Settings.from_env(), home=home, kafka_port=kafka_port, kafka_controller_port=free_port(),
        kafka_bootstrap=f"127.0.0.1:{kafka_port}", api_port=free_port(), event_partitions=12,
        sql_url=f"sqlite:///{home / 'projections.sqlite3'}", clickhouse_url=None, kafka_security={},
        processor_group="bench-processor")
    (home / "logs").mkdir(parents=True)
    broker = KafkaBroker(settings)
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        print(f"kafka      started in {broker.start():.1f}s on {settings.kafka_bootstrap}", flush=True)
        ensure_topics(settings)
        ensure_admin_token(settings)
        token = settings.admin_token_path.read_text().strip()
        env = {**os.environ, **settings.to_env()}
        cli = [sys.executable, "-m", "careledger.cli"]
        for name, cmd in (("processor-sql", ["process", "--projection", "sql"]), ("api", ["serve"]),
                          ("webhooks", ["deliver-webhooks"])):
            with open(home / "logs" / f"{name}.log", "ab") as log:
                procs.append(subprocess.Popen([*cli, *cmd], env=env, stdout=log, stderr=subprocess.STDOUT,
                                              cwd=REPO_ROOT))

        def api_up() -> bool:
            try:
                return httpx.get(settings.api_url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(api_up, 90, "the API")
        arrivals = Arrivals()
        receiver = Receiver().start()
        made = httpx.post(settings.api_url + "/api/webhooks", headers={"Authorization": f"Bearer {token}"},
                          json={"url": receiver.url, "description": "bench"}, timeout=10)
        made.raise_for_status()
        receiver.state.secrets.append(made.json()["secret"])
        receiver.state.on_accept = lambda item: arrivals.record("webhook", item.body, item.at)
        threads = [threading.Thread(target=kafka_client, args=(settings, arrivals, stop), daemon=True),
                   threading.Thread(target=sse_client, args=(settings.api_url, token, arrivals, stop), daemon=True)]
        for thread in threads:
            thread.start()

        publisher = EventPublisher(settings)
        warm = {visit(i, "warm")["event_id"] for i in range(5)}
        publisher.publish_and_wait([(visit(i, "warm"), None) for i in range(5)])
        wait_for(lambda: all(arrivals.count(p, warm) == len(warm) for p in PATHS), 180,
                 lambda: "the warm-up alerts: " + ", ".join(f"{p}={arrivals.count(p, warm)}" for p in PATHS))
        print("warm-up    every path delivered 5 alerts; measuring", flush=True)

        background_sent = [0]
        if args.background:
            threads.append(threading.Thread(target=background, args=(settings, args.background, stop,
                                                                     background_sent), daemon=True))
            threads[-1].start()
            time.sleep(3)  # the stream is flowing before the first measured alert
        sent: dict[str, float] = {}
        started, background_at_start = time.monotonic(), background_sent[0]
        for i in range(args.events):
            delay = started + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            event = visit(i, "run")
            sent[event["event_id"]] = time.time()
            publisher.publish_and_wait([(event, None)])
        publisher.close()
        ids = set(sent)
        wait_for(lambda: all(arrivals.count(p, ids) == len(ids) for p in PATHS), 120,
                 lambda: "every alert on every path: " + ", ".join(f"{p}={arrivals.count(p, ids)}" for p in PATHS))

        seconds = time.monotonic() - started
        background_rate = (background_sent[0] - background_at_start) / max(seconds, 1e-9)
        print(f"\n{args.events} hazard visits at {args.rate:g}/s → one alert each, inside a stream of "
              f"{background_rate:,.0f} other events/s; "
              "latency from the producer send to the subscriber (ms)")
        print(f"{'path':<10}{'n':>6}{'median':>10}{'p99':>10}{'max':>10}")
        for path in PATHS:
            lat = [(arrivals.at[path][e] - sent[e]) * 1000 for e in ids]
            print(f"{path:<10}{len(lat):>6}{statistics.median(lat):>10.0f}{percentile(lat, 0.99):>10.0f}"
                  f"{max(lat):>10.0f}")
        print(f"\nreproduce: .venv/bin/python bench/alert_latency.py --events {args.events} --rate {args.rate:g} "
              f"--background {args.background:g}")
        print(f"webhook deliveries: {len(receiver.state.accepted)} accepted, duplicates "
              f"{len(receiver.state.duplicates)}, bad signatures {len(receiver.state.bad_signatures)}")
        receiver.stop()
        return 0
    finally:
        stop.set()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        if args.keep:
            print(f"home kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
