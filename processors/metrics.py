"""Operations endpoint of a processor worker: Prometheus ``/metrics``, ``/healthz``, ``/readyz``.

Enabled by ``CARELEDGER_METRICS_PORT`` (0 = off, the default outside ``make up``); binds
``CARELEDGER_METRICS_ADDR``.
Metrics live in the process registry of ``careledger.metrics`` (one registry per process).
Every series carries ``projection``; run several workers on one host with one port each.

Every metric, its labels, meaning and a PromQL query for a Grafana panel: docs/metrics.md (a unit
test holds that list to the declarations below).  ``make up`` gives every worker its own port.

``/healthz``: 200 while the worker runs (not crashed, not shutting down).  ``/readyz``: 200 once
it owns partitions (or the group assigned it none) and its store answers a ping; 503 otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from careledger import metrics as m
from processors.lag import LagReport
from processors.runtime.records import BatchStats

log = logging.getLogger("careledger.processor")

BATCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS_IN = m.counter("careledger_processor_events_in_total", "Decoded events consumed, by type",
                      ["projection", "type"])
RECORDS = m.counter("careledger_processor_records_total", "Records consumed (events and poison)", ["projection"])
APPLIED = m.counter("careledger_processor_events_applied_total", "Events newly applied to the store",
                    ["projection"])
POISON = m.counter("careledger_processor_poison_total", "Records dead-lettered", ["projection"])
DLQ = m.counter("careledger_processor_dlq_published_total", "Dead letters handed to the DLQ topic",
                ["projection"])
RETRIES = m.counter("careledger_processor_store_retries_total", "Transient store failures waited out",
                    ["projection"])
HOLES = m.counter("careledger_processor_offset_holes_total",
                  "Runs of offsets skipped because the broker holds no record there", ["projection"])
BATCHES = m.counter("careledger_processor_batches_total", "Batches applied", ["projection"])
BATCH_SECONDS = m.histogram("careledger_processor_batch_seconds",
                            "Projection write latency: one batch from decode to commit",
                            ["projection"], buckets=BATCH_BUCKETS)
LAG = m.gauge("careledger_processor_lag_events", "Events not yet in the store, per partition",
              ["projection", "partition"])
LAG_TOTAL = m.gauge("careledger_processor_lag_total_events", "Events not yet in the store", ["projection"])
ASSIGNED = m.gauge("careledger_processor_assigned_partitions", "Partitions this worker owns", ["projection"])
ALERT_CHANGES = m.counter("careledger_alert_changes_published_total",
                          "Alert changes relayed to careledger.alerts, by rule and status", ["rule", "status"])
READY = m.gauge("careledger_processor_ready", "1 while the worker is ready", ["projection"])
SECONDS = m.counter("careledger_processor_seconds_total",
                    "Where the worker's time goes: applier_working / applier_waiting / applier_receiving, "
                    "agent_collecting / agent_waiting / agent_submitting", ["projection", "part"])


class WorkerMetrics:
    """Turns the runner's cumulative stats, lag reports and relay output into metrics."""

    def __init__(self, projection: str) -> None:
        self.projection = projection
        self._seen = BatchStats()
        self._lock = threading.Lock()
        self.assigned = False  # the group has assigned this worker (possibly zero partitions)
        self.stopping = False
        self.crashed = False
        self._holes = 0
        self._dead_letters = 0
        self._spent: dict[str, float] = {}  # "<process>_<part>" -> seconds exported so far
        for metric in (RECORDS, APPLIED, POISON, DLQ, RETRIES, BATCHES, HOLES):
            metric.labels(projection)  # export zeros from the start
        READY.labels(projection).set(0)

    def batch_done(self, stats: BatchStats, records: int, seconds: float) -> None:
        """After a runtime batch: add what changed in its cumulative ``stats``."""
        p = self.projection
        with self._lock:
            seen = self._seen
            RECORDS.labels(p).inc(records)
            BATCH_SECONDS.labels(p).observe(seconds)
            for attr, metric in (("batches", BATCHES), ("applied", APPLIED), ("poison", POISON),
                                 ("retries", RETRIES)):
                delta = getattr(stats, attr) - getattr(seen, attr)
                if delta > 0:
                    metric.labels(p).inc(delta)
                setattr(seen, attr, getattr(stats, attr))
            for kind, count in stats.by_type.items():
                delta = count - seen.by_type.get(kind, 0)
                if delta > 0:
                    EVENTS_IN.labels(p, kind).inc(delta)
                seen.by_type[kind] = count

    def time_spent(self, process: str, totals: dict[str, float]) -> None:
        """``totals``: cumulative seconds per part of ``process`` (``applier``, ``agent``).  The share
        of wall time the applier works says which side is the bottleneck (docs/metrics.md)."""
        with self._lock:
            for part, total in totals.items():
                key = f"{process}_{part}"
                delta = total - self._spent.get(key, 0.0)
                if delta > 0:
                    SECONDS.labels(self.projection, key).inc(delta)
                    self._spent[key] = total

    def offset_holes(self, total: int) -> None:
        """``total``: the position guard's cumulative count."""
        if total > self._holes:
            HOLES.labels(self.projection).inc(total - self._holes)
            self._holes = total

    def dead_letters(self, total: int) -> None:
        """``total``: the applier's cumulative count of records handed to the DLQ topic."""
        with self._lock:
            if total > self._dead_letters:
                DLQ.labels(self.projection).inc(total - self._dead_letters)
                self._dead_letters = total

    def lag(self, report: LagReport) -> None:
        per_partition = report.per_partition.get(self.projection, {})
        for partition, lag in per_partition.items():
            LAG.labels(self.projection, str(partition)).set(lag)
        LAG_TOTAL.labels(self.projection).set(sum(per_partition.values()))

    def partitions_assigned(self, count: int) -> None:
        self.assigned = True
        ASSIGNED.labels(self.projection).set(count)

    @staticmethod
    def alert_changes(changes: list[tuple[str, str]]) -> None:
        """(rule, status) of every alert change the relay published since the last report."""
        for rule, status in changes:
            ALERT_CHANGES.labels(rule, status).inc()


class OpsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` on a daemon thread (stdlib HTTP server)."""

    def __init__(self, metrics: WorkerMetrics, store_ping: Callable[[], bool], port: int,
                 addr: str = "127.0.0.1") -> None:
        self.metrics = metrics
        self.store_ping = store_ping
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((addr, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="careledger-ops", daemon=True)

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics (healthz, readyz)", *self.httpd.server_address[:2])
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def health(self) -> tuple[bool, dict[str, Any]]:
        w = self.metrics
        ok = not (w.crashed or w.stopping)
        return ok, {"status": "ok" if ok else ("crashed" if w.crashed else "stopping"),
                    "projection": w.projection}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        w = self.metrics
        healthy, body = self.health()
        try:
            store_ok = bool(self.store_ping())
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            store_ok = False
            body["store_error"] = f"{type(exc).__name__}"
        ready = healthy and w.assigned and store_ok
        body.update(ready=ready, assigned=w.assigned, store=store_ok)
        READY.labels(w.projection).set(1 if ready else 0)
        return ready, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, content_type = m.exposition()
                    self._send(200, body, content_type)
                elif path in ("/healthz", "/readyz"):
                    ok, info = server.health() if path == "/healthz" else server.readiness()
                    self._send(200 if ok else 503, json.dumps(info).encode(), "application/json")
                else:
                    self._send(404, b'{"detail": "not found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # scrapes are not log lines
                pass

        return Handler
