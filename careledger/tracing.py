"""W3C trace context (OpenTelemetry): one trace from an event's ingest to the webhook its alert causes.

The hops, each a span whose ``traceparent`` (``00-<trace id>-<span id>-<flags>``) travels on:

1. **ingest** (``producers.publisher``, every producer): span ``publish event`` per event, the
   Kafka header ``traceparent`` of its ``careledger.events`` message (``POST /api/events``: a child
   of the caller's ``traceparent``, if it sent a valid one);
2. **worker** (``projections.sql.writer``): span ``apply event``, child of the event's, stored with
   every outbox row the event causes (``alert_outbox.traceparent``: alert changes, warning notices);
3. **relay** (``producers.publisher.publish_alerts``): span ``publish alert``, the header of the
   ``careledger.alerts`` / ``careledger.warnings`` message;
4. **deliverer** (``projections.webhooks``): the message's header is stored with the delivery; each
   POST is a span ``deliver webhook`` whose ``traceparent`` is an HTTP header of the request.

All four share the trace id, which the JSON logs show as ``trace_id`` where they know it.

By default the process has an SDK ``TracerProvider`` **without exporters**: ids are real and
propagate, nothing leaves the process.  ``CARELEDGER_OTLP_ENDPOINT`` (e.g.
``http://collector:4318/v1/traces``) exports spans with OTLP over HTTP; that needs the optional
package ``opentelemetry-exporter-otlp-proto-http`` (``pip install 'careledger[otlp]'``).

Cost: while nothing exports, the per-event span of step 1 is only its ids (no span object: nobody
would ever see it: 0.8 µs instead of 22 µs per event on the ingest path, measured here).  Everything else (a few
spans per alert) always goes through the SDK.

A malformed incoming ``traceparent`` (header or HTTP) is ignored: the span starts a new trace.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from careledger.settings import Settings

TRACEPARENT = "traceparent"
"""The W3C header name, on Kafka messages and HTTP requests alike."""
INSTRUMENTATION = "careledger"
SAMPLED = 0x01
OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"

_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_provider: TracerProvider | None = None
_exporting = False


class TracingUnavailable(RuntimeError):
    """Export is configured but its package is missing (a clear start-up error, not a silent gap)."""


def configure(settings: Settings, service: str) -> TracerProvider:
    """Set this process's provider once, at start (``service``: ``processor-sql``, ``api``, ...):
    without exporters, or with the OTLP exporter when ``CARELEDGER_OTLP_ENDPOINT`` is set."""
    global _provider, _exporting
    provider = TracerProvider(resource=Resource.create({"service.name": f"careledger-{service}"}))
    exporting = False
    if settings.otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise TracingUnavailable(
                f"CARELEDGER_OTLP_ENDPOINT is set but {OTLP_PACKAGE} is not installed "
                "(pip install 'careledger[otlp]', or unset the variable)") from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        exporting = True
    with _lock:
        old, _provider, _exporting = _provider, provider, exporting
    if old is not None:
        old.shutdown()
    return provider


def provider() -> TracerProvider:
    """This process's provider (one without exporters until :func:`configure` ran)."""
    global _provider
    if _provider is None:
        with _lock:
            if _provider is None:
                _provider = TracerProvider()
    return _provider


def shutdown() -> None:
    """Flush exported spans (at the end of a process that exports)."""
    if _provider is not None:
        _provider.shutdown()


def exporting() -> bool:
    return _exporting


def _tracer() -> trace.Tracer:
    return provider().get_tracer(INSTRUMENTATION)


# ---- the traceparent text ----------------------------------------------------------------------
def parse(traceparent: str | bytes | None) -> trace.SpanContext | None:
    """The span context a ``traceparent`` names; None when absent or malformed (never raises)."""
    if traceparent is None:
        return None
    if isinstance(traceparent, bytes):
        try:
            traceparent = traceparent.decode("ascii")
        except UnicodeDecodeError:
            return None
    context = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    found = trace.get_current_span(context).get_span_context()
    return found if found.is_valid else None


def format_traceparent(span_context: trace.SpanContext) -> str:
    """``00-<32 hex trace id>-<16 hex span id>-<flags>`` (W3C Trace Context level 1: the flags are
    ``01`` when sampled, else ``00``; the SDK's level-2 "random" bit is left out for strict parsers)."""
    flags = int(span_context.trace_flags) & SAMPLED
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags:02x}"


def trace_id(traceparent: str | bytes | None) -> str | None:
    """The 32-hex trace id of a valid ``traceparent`` (for log lines), else None."""
    found = parse(traceparent)
    return None if found is None else f"{found.trace_id:032x}"


def header(headers: Iterable[tuple[str, bytes]] | Mapping[str, Any] | None) -> str | None:
    """The ``traceparent`` among Kafka message headers (``[(name, bytes)]``) or HTTP headers
    (a mapping), as text; None when absent or not ASCII.  Not validated: :func:`parse` does that."""
    if not headers:
        return None
    value: Any = None
    if isinstance(headers, list | tuple):  # Kafka (the worker's path: once per record)
        for name, found in headers:
            if name == TRACEPARENT:
                value = found
                break
    elif isinstance(headers, Mapping):
        value = headers.get(TRACEPARENT)
    else:
        value = next((v for k, v in headers if k == TRACEPARENT), None)
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def valid(traceparent: str | bytes | None) -> str | None:
    """``traceparent`` in its canonical form when valid, else None (what may be stored: a foreign
    producer's header can be anything)."""
    found = parse(traceparent)
    return None if found is None else format_traceparent(found)


def kafka_headers(traceparent: str) -> list[tuple[str, bytes]]:
    """The Kafka message headers that carry ``traceparent``."""
    return [(TRACEPARENT, traceparent.encode("ascii"))]


# ---- spans -------------------------------------------------------------------------------------
def _parent_context(parent: str | bytes | None) -> Any:
    found = parse(parent)
    return None if found is None else trace.set_span_in_context(trace.NonRecordingSpan(found))


@contextmanager
def span(name: str, parent: str | bytes | None = None, *, kind: SpanKind = SpanKind.INTERNAL,
         attributes: Mapping[str, str | int] | None = None) -> Iterator[str]:
    """A span that lasts for the ``with`` body, child of ``parent`` (a traceparent; absent or
    malformed: a new trace); yields its own traceparent to pass on."""
    started = _tracer().start_span(name, context=_parent_context(parent), kind=kind,
                                   attributes=dict(attributes or {}))
    try:
        yield format_traceparent(started.get_span_context())
    finally:
        started.end()


def child(name: str, parent: str | bytes | None = None, *, kind: SpanKind = SpanKind.INTERNAL) -> str:
    """:func:`span` for a step that is over at once: the new span's traceparent."""
    with span(name, parent, kind=kind) as traceparent:
        return traceparent


def event_traceparent(parent: str | bytes | None = None) -> str:
    """The ``publish event`` span of one ingested event (step 1), child of ``parent`` if valid.
    Without an exporter only its ids are made, with the provider's id generator (see the module
    docstring: this runs for every event of a million-line import)."""
    if _exporting:
        return child("publish event", parent, kind=SpanKind.PRODUCER)
    ids = provider().id_generator
    found = parse(parent) if parent is not None else None
    trace_id_ = found.trace_id if found is not None else ids.generate_trace_id()
    return f"00-{trace_id_:032x}-{ids.generate_span_id():016x}-01"


__all__ = ["TRACEPARENT", "SpanKind", "TracingUnavailable", "child", "configure", "event_traceparent", "exporting",
           "format_traceparent", "header", "kafka_headers", "parse", "provider", "shutdown", "span", "trace_id", "valid"]
