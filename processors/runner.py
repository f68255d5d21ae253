"""Feeding consumed batches to a projection store without ever losing or skipping an event.

Faust acks an event even when the agent raises (the ack sits in a ``finally``), so nothing may
escape from here.  The policy, per batch:

1. decode every record (``schemas.validation.decode_consumed``), then unseal the batch
   (``processors.privacy.unseal_batch``: sealed fields restored, a forgotten person's events
   erased); a poison record goes to the dead-letter topic with its reason and travels on as
   ``Consumed(event=None)`` so only its position advances;
2. ``store.apply_batch`` in a worker thread (blocking SQL/ClickHouse I/O stays off the loop);
3. a *transient* failure (connection lost, server down, lock timeout) is retried with capped
   exponential backoff for as long as it takes: the batch is never dropped, the lag grows and is
   visible in ``/api/status``;
4. any other failure is deterministic for some event: the batch is bisected down to the single
   event that fails, that one is dead-lettered with the error, and the rest are applied.

The store is idempotent per position (offsets in the same transaction), so a retry after a
half-finished attempt, a crash or a redelivery never double counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from processors.domain.model import Consumed
from projections.store import ProjectionStore
from schemas.enums import PERSONLESS_TYPES
from schemas.validation import PoisonRecord, decode_consumed, partition_key

log = logging.getLogger("careledger.processor")

DeadLetter = Callable[[bytes | None, bytes, list[str], int, int], None]
"""``(key, raw value, reasons, partition, offset)`` → publish to the dead-letter topic."""

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class RunnerStats:
    batches: int = 0
    applied: int = 0
    poison: int = 0
    retries: int = 0
    last_batch_seconds: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)


def is_transient(exc: BaseException) -> bool:
    """Errors worth waiting out: the server or the connection, not the data."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError | PoolTimeout | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    try:
        from clickhouse_driver import errors as ch_errors

        if isinstance(exc, ch_errors.NetworkError | ch_errors.SocketTimeoutError):
            return True
    except ImportError:  # pragma: no cover - clickhouse-driver is a dependency
        pass
    return False


def call_retrying(action: Callable[[], T], what: str, *, max_backoff_s: float = MAX_BACKOFF_S,
                  sleep: Callable[[float], None] = time.sleep, give_up: Callable[[], bool] = lambda: False,
                  on_retry: Callable[[], None] = lambda: None) -> T:
    """``action()``, waiting out transient failures (:func:`is_transient`) with capped exponential
    backoff for as long as it takes, each logged as "<what> unavailable (...); retrying in Ns".
    Other errors, and any error once ``give_up()`` says so (a stopping worker), are raised."""
    delay = FIRST_BACKOFF_S
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc) or give_up():
                raise
            on_retry()
            log.warning("%s unavailable (%s); retrying in %.1fs", what, exc, delay)
            sleep(delay)
            delay = min(delay * 2, max_backoff_s)


def _check_key(key: bytes | None, event: dict[str, Any]) -> None:
    """A message keyed by anything but its ``partition_key`` may sit on another partition than the
    person's other events, so their order is lost: dead-letter it rather than apply it out of order.
    (An absent key is let through: producers outside careledger's publisher may leave it out.)"""
    if key is not None and key != partition_key(event).encode("utf-8"):
        field = "payload.employer" if event["type"] in PERSONLESS_TYPES else "person_id"
        raise PoisonRecord(f"key: does not match the event's {field} (events are keyed by it so that "
                           "they stay in order on one partition)")


class BatchRunner:
    """Decode → apply (retry transient, bisect poison) for one projection store."""

    def __init__(self, store: ProjectionStore, dead_letter: DeadLetter, *,
                 max_backoff_s: float = MAX_BACKOFF_S, sleep: Callable[[float], None] = time.sleep,
                 keystore: Any = None) -> None:
        self.store = store
        self.keystore = keystore  # None: the key store of Settings.from_env(), opened on first use
        self.dead_letter = dead_letter
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.stats = RunnerStats()
        self.stopping = False

    def decode(self, raws: Sequence[RawRecord]) -> list[Consumed]:
        records: list[Consumed] = []
        for raw in raws:
            try:
                event: dict[str, Any] | None = decode_consumed(raw.value)
                _check_key(raw.key, event)
            except PoisonRecord as exc:
                self._dead_letter(raw, [str(exc)])
                event = None
            records.append(Consumed(raw.partition, raw.offset, event))
        return self._unseal(records, raws)

    def _unseal(self, records: list[Consumed], raws: Sequence[RawRecord]) -> list[Consumed]:
        from processors.privacy import default_keystore, unseal_batch

        if self.keystore is None:
            sealed = any(r.event is not None and "sealed" in r.event for r in records)
            self.keystore = default_keystore(create=sealed)
            if self.keystore is None:  # no key store yet: nothing sealed, nobody forgotten
                return records
        failed: dict[int, str] = {}
        events = unseal_batch([r.event for r in records], self.keystore,
                              on_error=lambda i, exc: failed.__setitem__(i, str(exc)))
        for index, reason in failed.items():
            self._dead_letter(raws[index], [reason])
        return [Consumed(r.partition, r.offset, e) for r, e in zip(records, events, strict=True)]

    def run(self, raws: Sequence[RawRecord]) -> int:
        """Process one batch to completion (blocking); return events newly applied."""
        started = time.perf_counter()
        records = self.decode(raws)
        by_position = {(r.partition, r.offset): r for r in raws}
        applied = self._apply(records, by_position)
        self.stats.batches += 1
        self.stats.applied += applied
        for record in records:
            if record.event is not None:
                kind = record.event["type"]
                self.stats.by_type[kind] = self.stats.by_type.get(kind, 0) + 1
        self.stats.last_batch_seconds = time.perf_counter() - started
        return applied

    def _apply(self, records: list[Consumed], by_position: dict[tuple[int, int], RawRecord]) -> int:
        try:
            return self._apply_with_retry(records)
        except Exception as exc:  # noqa: BLE001 - deterministic failure: find the event
            if is_transient(exc):  # only while stopping: leave the batch for the next run
                raise
            if len(records) == 1:
                record = records[0]
                raw = by_position[(record.partition, record.offset)]
                log.error("dead-lettering event at %s/%s: %r", record.partition, record.offset, exc)
                self._dead_letter(raw, [f"processing failed: {type(exc).__name__}: {exc}"])
                return self._apply_with_retry([Consumed(record.partition, record.offset, None)])
            middle = len(records) // 2
            return self._apply(records[:middle], by_position) + self._apply(records[middle:], by_position)

    def _apply_with_retry(self, records: list[Consumed]) -> int:
        return call_retrying(lambda: self.store.apply_batch(records), f"store {self.store.name}",
                             max_backoff_s=self.max_backoff_s, sleep=self.sleep,
                             give_up=lambda: self.stopping, on_retry=self._count_retry)

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def _dead_letter(self, raw: RawRecord, reasons: list[str]) -> None:
        self.stats.poison += 1
        self.dead_letter(raw.key, raw.value, reasons, raw.partition, raw.offset)
