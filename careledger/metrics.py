"""Prometheus metrics: one registry per process, reusable by any careledger process.

Usage from any process (a worker, the relay, the API)::

    from careledger import metrics
    applied = metrics.counter("careledger_events_applied_total", "Events applied", ["projection"])
    applied.labels("sql").inc(n)
    metrics.serve(9100)            # or expose metrics.exposition() on an existing HTTP server

``counter``/``gauge``/``histogram`` return the existing metric when called again with the same
name, so modules can declare their metrics at import time without clashing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def _get(kind: type, name: str, documentation: str, labels: Sequence[str], **kwargs: Any) -> Any:
    with _lock:
        existing = _metrics.get(name)
        if existing is not None:
            if not isinstance(existing, kind):
                raise ValueError(f"metric {name!r} already registered as {type(existing).__name__}")
            return existing
        metric = kind(name, documentation, list(labels), registry=REGISTRY, **kwargs)
        _metrics[name] = metric
        return metric


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    return _get(Counter, name, documentation, labels)


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    return _get(Gauge, name, documentation, labels)


def histogram(name: str, documentation: str, labels: Sequence[str] = (),
              buckets: Sequence[float] | None = None) -> Histogram:
    kwargs = {"buckets": tuple(buckets)} if buckets is not None else {}
    return _get(Histogram, name, documentation, labels, **kwargs)


def declared() -> list[tuple[str, str, tuple[str, ...], str]]:
    """Every metric declared in this process so far: ``(name, type, labels, help)``, by name
    (docs/metrics.md is checked against it by ``tests/unit/careledger/test_metrics_doc.py``)."""
    with _lock:
        items = sorted(_metrics.items())
    return [(name, type(metric).__name__.lower(), tuple(metric._labelnames), metric._documentation)
            for name, metric in items]


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric of this process and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose this registry on ``http://addr:port/metrics`` from a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
