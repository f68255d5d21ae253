"""The one way events reach Kafka: an idempotent, acks=all kafka-python producer.

No-loss settings (see shared/notes/streaming-stack.md): ``acks="all"`` and
``enable_idempotence=True`` set explicitly (a conflicting option would silently turn idempotence
off), lz4 batches, retries.  Every send's future is checked: failures are collected by the
producer's I/O thread and raised from ``flush()``, so a caller that flushed without an error knows
every event it published is on the broker.

Every event message carries a W3C ``traceparent`` header: the ``publish event`` span of that event
(careledger/tracing.py), so the alert it may cause and the webhook that delivers it share its trace
id; alert and warning messages carry the ``publish alert`` span of their outbox row's trace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from careledger import tracing
from careledger.settings import Settings
from producers.partitioner import KeyCachingPartitioner
from producers.pseudonym import redact
from schemas.jsontext import dumps_bytes
from schemas.privacy import has_plain_sensitive
from schemas.validation import partition_key

MAX_DLQ_RECORD_CHARS = 64 * 1024  # keeps a dead letter well under the broker's message limit
HOLD_MAX = 2000  # events held while their persons' data keys are created in one transaction

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 10,
    "batch_size": 256 * 1024,
    "compression_type": "lz4",
    "retries": 2_147_483_647,
    "delivery_timeout_ms": 120_000,
    "max_in_flight_requests_per_connection": 5,
    "max_request_size": 4 * 1024 * 1024,
    "client_id": "careledger-producer",
}


class PublishError(RuntimeError):
    """Some sends were not acknowledged.  Safe to re-run: event_ids make re-sends harmless."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} message(s) not acknowledged by Kafka: "
                         + "; ".join(failures[:5]) + more)


def encode(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the wire form of an event."""
    return dumps_bytes(event)


class EventPublisher:
    """Publish canonical (pseudonymised) events and dead letters.

    Thread-safe (KafkaProducer is); use as a context manager or call ``flush()``/``close()``.
    """

    def __init__(self, settings: Settings, *, producer: Any = None, **overrides: Any) -> None:
        self.settings = settings
        self.topics = settings.topics
        config = {**settings.kafka_client_options(), **PRODUCER_DEFAULTS, "partitioner": KeyCachingPartitioner(),
                  **overrides}
        self._producer = producer if producer is not None else KafkaProducer(**config)
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self.sent = 0
        self.dead_lettered = 0
        self._sealer: Any = None
        # Events waiting for their persons' data keys: keys are created in one key-store
        # transaction per HOLD_MAX events instead of one per new person, and every key is
        # durable before an event sealed with it leaves this process.  Once anything is held,
        # everything is held (and released in order), so a person's events never overtake.
        # Entries: (key, wire value, traceparent) of an event to send as it is, or (key, the event,
        # traceparent) of one with sensitive fields still in clear, sealed at the release.
        self._held: list[tuple[str, bytes | dict[str, Any], str]] = []

    @property
    def sealer(self) -> Any:
        if self._sealer is None:
            from producers.keystore import LazySealer

            self._sealer = LazySealer(self.settings)
        return self._sealer

    def _protect(self, event: dict[str, Any], value: bytes | None) -> tuple[dict[str, Any], bytes | None]:
        """Seal sensitive fields (docs/privacy.md); keys of the persons must be fetched already
        for this to be cheap (``_prefetch_keys``)."""
        if not has_plain_sensitive(event):
            return event, value
        return self.sealer.seal(event), None

    def _prefetch_keys(self, events: Iterable[dict[str, Any]]) -> None:
        persons = {e["person_id"] for e in events if e.get("person_id") and has_plain_sensitive(e)}
        if persons:
            self.sealer.keys(persons)

    def _release(self) -> None:
        held, self._held = self._held, []
        if not held:
            return
        self._prefetch_keys(item for _, item, _ in held if isinstance(item, dict))
        for key, item, traceparent in held:
            self._send(self.topics.events, key, encode(self.sealer.seal(item)) if isinstance(item, dict) else item,
                       traceparent=traceparent)

    def event_partitions(self) -> int:
        """How many partitions the events topic has (from the broker's metadata)."""
        return len(self._producer.partitions_for(self.topics.events))

    # ---- sending --------------------------------------------------------------------------------
    def _send(self, topic: str, key: str | None, value: bytes, track: bool = True,
              traceparent: str | None = None) -> Any:
        headers = {"headers": tracing.kafka_headers(traceparent)} if traceparent else {}
        try:
            future = self._producer.send(topic, key=key.encode("utf-8") if key is not None else None,
                                         value=value, **headers)
        except KafkaError as exc:
            self._record(topic, exc)
            return None
        if track:
            future.add_errback(lambda exc: self._record(topic, exc))
        return future

    def _record(self, topic: str, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(f"{topic}: {type(exc).__name__}: {redact(str(exc))}")

    def publish(self, event: dict[str, Any], *, value: bytes | None = None, parent: str | None = None) -> Any:
        """Send one validated, pseudonymised event keyed by ``partition_key``; returns the future.

        ``value`` may carry the already encoded event (callers that scanned the bytes); ``parent``
        a ``traceparent`` the event's span continues (absent or malformed: a new trace)."""
        if "id_number" in event:
            raise ValueError("refusing to publish an event that still has id_number")
        if has_plain_sensitive(event):
            return self._publish(partition_key(event), event, parent)
        return self._publish(partition_key(event), value if value is not None else encode(event), parent)

    def publish_encoded(self, key: str, value: bytes, *, plain: dict[str, Any] | None = None) -> Any:
        """:meth:`publish` for an event already validated, pseudonymised and encoded (ingest's line
        check): ``key`` is its ``partition_key``; ``plain`` the event itself when it still carries
        sensitive fields in clear (they are sealed here, and ``value`` is not sent).  Returns the
        future, or None when the event is held for its person's data key."""
        return self._publish(key, plain if plain is not None else value)

    def _publish(self, key: str, item: bytes | dict[str, Any], parent: str | None = None) -> Any:
        """Send the wire value ``item``, or hold it (and an event to seal, always) for the release;
        its span starts now (the moment it was accepted), whenever it leaves."""
        self.sent += 1
        traceparent = tracing.event_traceparent(parent)
        if self._held or isinstance(item, dict):
            self._held.append((key, item, traceparent))
            if len(self._held) >= HOLD_MAX:
                self._release()
            return None  # sent at the next release (at the latest flush/close); failures surface there
        return self._send(self.topics.events, key, item, traceparent=traceparent)

    def publish_dlq(self, record: Any, reasons: Iterable[str], origin: dict[str, Any],
                    traceparent: str | None = None) -> Any:
        """Dead-letter a rejected input with its reasons and where it came from (redacted);
        ``traceparent``: the trace it belongs to (a record of the events topic that had one)."""
        safe = redact(record)
        if isinstance(safe, str) and len(safe) > MAX_DLQ_RECORD_CHARS:
            safe = safe[:MAX_DLQ_RECORD_CHARS] + "...[truncated]"
        elif not isinstance(safe, str) and len(encode_any(safe)) > MAX_DLQ_RECORD_CHARS:
            safe = encode_any(safe)[:MAX_DLQ_RECORD_CHARS] + "...[truncated]"
        body = {"reasons": [redact(r) for r in reasons], "origin": redact(origin), "record": safe}
        self.dead_lettered += 1
        return self._send(self.topics.dlq, None, encode(body), traceparent=tracing.valid(traceparent))

    def publish_alerts(self, pending: Sequence[dict[str, Any]], timeout: float = 30.0) -> None:
        """Publish outbox rows - alert changes to the alerts topic, need warnings (``channel``
        ``warning``) to the warnings topic - keyed by the alert or warning id, and wait for every
        acknowledgement (the relay marks them sent only after this returns).  The message carries
        the outbox ``seq`` so subscribers can de-duplicate redeliveries, and the ``traceparent``
        header of a ``publish alert`` span, child of the row's ``traceparent`` (if it has one)."""
        futures = []
        failures: list[str] = []
        for row in pending:
            body = {**row["alert"], "outbox_seq": row["seq"]}
            topic = self.topics.warnings if row.get("channel") == "warning" else self.topics.alerts
            traceparent = tracing.child("publish alert", row.get("traceparent"), kind=tracing.SpanKind.PRODUCER)
            try:
                futures.append(self._producer.send(topic, key=row["alert_id"].encode("utf-8"),
                                                   value=encode(body), headers=tracing.kafka_headers(traceparent)))
            except KafkaError as exc:
                failures.append(f"{type(exc).__name__}: {redact(str(exc))}")
        self._producer.flush(timeout=timeout)
        for future in futures:
            try:
                future.get(timeout=timeout)
            except KafkaError as exc:
                failures.append(f"{type(exc).__name__}: {redact(str(exc))}")
        if failures:
            raise PublishError(failures)

    def publish_and_wait(self, events: Sequence[tuple[dict[str, Any], bytes | None]],
                         timeout: float = 30.0, *, parent: str | None = None) -> None:
        """Send events and wait for exactly their acknowledgements (for request/response callers,
        whose failures must not surface in someone else's ``flush``).  ``parent``: the caller's
        ``traceparent`` (``POST /api/events``), which every event's span continues if valid."""
        self._release()  # what was held goes first, in order
        self._prefetch_keys(event for event, _ in events)
        futures = []
        failures: list[str] = []
        events = [self._protect(event, value) for event, value in events]  # all sealed before any send
        for event, value in events:
            if "id_number" in event:
                raise ValueError("refusing to publish an event that still has id_number")
            try:
                futures.append(self._producer.send(
                    self.topics.events, key=partition_key(event).encode("utf-8"),
                    value=value if value is not None else encode(event),
                    headers=tracing.kafka_headers(tracing.event_traceparent(parent))))
            except KafkaError as exc:
                failures.append(f"{type(exc).__name__}: {redact(str(exc))}")
        self._producer.flush(timeout=timeout)
        for future in futures:
            try:
                future.get(timeout=timeout)
            except KafkaError as exc:
                failures.append(f"{type(exc).__name__}: {redact(str(exc))}")
        self.sent += len(futures)
        if failures:
            raise PublishError(failures)

    # ---- lifecycle -------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Send what is held, wait for every send; raise ``PublishError`` if any failed since the
        last flush."""
        try:
            self._release()
        except Exception as exc:  # noqa: BLE001 - reported like any send failure
            self._record("release", exc)
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            self._record("flush", exc)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise PublishError(failures)

    def close(self, timeout: float | None = 30.0) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the original error with a flush failure
            try:
                self.close()
            except Exception:  # noqa: BLE001, S110 - the original exception is the one to report
                pass


def encode_any(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
