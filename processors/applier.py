"""Where a live worker applies its batches: in a thread of the faust process, or in a process of
its own (``CARELEDGER_APPLY_PROCESS``, on by default).

Why a process: faust's per-event machinery (consumer thread → conductor → channel → stream →
agent) costs about as much CPU per event as the whole projection does (profile in
docs/performance.md).  In one process both share one GIL, so a worker could never go faster than
about half of a bare faust agent.  In two processes they run on two cores: the faust process only
receives records, guards their positions and ships each batch (raw bytes) to the applier process,
which decodes, folds, writes and commits through the projection runtime - the same runtime, the
same commit order, positions in the same transaction.  Exactly-once does not change: the applier
is the only writer of the worker's batches, and the agent waits for its answer before it sends the
next batch.  The applier also owns everything else that writes: housekeeping (the warning sweep,
escalation) and the outbox relay.

Requests to the applier process, one at a time, each answered (``ProcessApplier`` serialises them):

* ``apply(raws)`` → a :class:`BatchReport` (cumulative stats, dead letters, alert changes published);
* ``housekeeping(now, sweep, escalate_after)`` → what became due, was cleared, was escalated;
* ``drain()`` → outbox rows published;
* ``switch()`` → reopen the store (a replay swapped another one in);
* ``stop()``.

A failure inside the applier comes back as :class:`ApplyFailed` (the worker then crashes and is
restarted: the batch is read again from the store's positions).  An applier that dies takes the
worker down the same way; a worker that dies closes the pipe, and the applier exits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, Protocol

from careledger import tracing
from careledger.retrying import call_retrying
from careledger.settings import Settings
from processors.alert_relay import AlertRelay
from processors.logging_setup import configure_logging
from processors.privacy import keystore_for
from processors.runtime.apply import ProjectionRuntime
from processors.runtime.contracts import Binding, StoreSource
from processors.runtime.decoding import RecordDecoder
from processors.runtime.records import BatchStats, RawRecord
from producers.publisher import EventPublisher

log = logging.getLogger("careledger.processor")


class ApplyFailed(RuntimeError):
    """The applier could not apply a batch (its error, by type and message)."""


@dataclass
class BatchReport:
    """What the applier did, for the faust process's metrics and logs."""

    stats: BatchStats  # cumulative
    dead_letters: int = 0  # cumulative: records handed to the DLQ topic
    alert_changes: list[tuple[str, str]] = field(default_factory=list)  # (rule, status) since the last report


@dataclass
class Housekept:
    due: int = 0
    cleared: int = 0
    escalated: int = 0


class Applier(Protocol):
    def apply(self, raws: list[RawRecord]) -> BatchReport: ...

    def housekeeping(self, now: datetime, sweep: bool, escalate_after: timedelta) -> Housekept | None:
        """None: the projection has no housekeeping."""

    def drain(self) -> int: ...

    def switch(self) -> None: ...

    def set_stopping(self) -> None:
        """The worker is stopping: a store outage is no longer waited out."""

    def stop(self) -> None: ...


class _CountingPublisher:
    """The relay's publisher, remembering (rule, status) of every published alert change."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self.changes: list[tuple[str, str]] = []

    def publish_alerts(self, pending: list[dict[str, Any]]) -> None:
        self.publisher.publish_alerts(pending)
        for row in pending:
            if row.get("channel", "alert") == "alert":
                alert = row.get("alert") or {}
                self.changes.append((str(alert.get("rule", "")), str(alert.get("status", ""))))

    def take(self) -> list[tuple[str, str]]:
        out, self.changes = self.changes, []
        return out


class Applying:
    """The applier's state in whichever process it runs: the store, the runtime, the relay."""

    def __init__(self, settings: Settings, projection: str, source: StoreSource) -> None:
        self.settings = settings
        self.projection = projection
        self.source = source
        self.publisher = EventPublisher(settings)
        self.counting = _CountingPublisher(self.publisher)
        self.dead_letters = 0
        # a store that is down at start is waited for here, as during a batch (not a crash loop)
        self.binding = call_retrying(source.open, f"store {projection}", logger=log)
        decoder = RecordDecoder(self._dead_letter, partial(keystore_for, settings))
        self.runtime = ProjectionRuntime(self.binding.projection, self.binding.writer, decoder,
                                         after_commit=[self._after_commit])
        self.relay = self._relay(self.binding)

    def _relay(self, binding: Binding) -> AlertRelay | None:
        return None if binding.outbox is None else AlertRelay(binding.outbox, self.counting)  # type: ignore[arg-type]

    def _dead_letter(self, raw: RawRecord, reasons: list[str]) -> None:
        """The record to the DLQ, its reasons, where it was, and its trace (a child span of its header's)."""
        parent = tracing.header(raw.headers)
        self.publisher.publish_dlq(raw.value.decode("utf-8", "replace"), reasons,
                                   {"source": self.settings.topics.events, "partition": raw.partition,
                                    "offset": raw.offset, "projection": self.projection},
                                   traceparent=tracing.child("dead-letter event", parent) if parent else None)
        self.dead_letters += 1

    def _after_commit(self, applied: int) -> None:
        self.publisher.flush()  # this batch's dead letters are on Kafka before its positions move on
        if self.relay is not None:
            self.relay.drain()

    def apply(self, raws: list[RawRecord]) -> BatchReport:
        self.runtime.apply(raws)
        return BatchReport(self.runtime.stats, self.dead_letters, self.counting.take())

    def housekeeping(self, now: datetime, sweep: bool, escalate_after: timedelta) -> Housekept | None:
        keeper = self.binding.housekeeping
        if keeper is None:
            return None
        done = Housekept()
        if sweep:
            swept = keeper.sweep_warnings(now)
            done.due, done.cleared = swept.due, swept.cleared
        done.escalated = keeper.escalate(now, escalate_after).escalated
        if (sweep or done.escalated) and self.relay is not None:
            self.relay.drain()
        return done

    def drain(self) -> int:
        return self.relay.drain() if self.relay is not None else 0

    def switch(self) -> None:
        """A replay swapped another store in: drain the old outbox, use the new store from now on."""
        if self.relay is not None:
            self.relay.drain()
        old, self.binding = self.binding, self.source.open()
        self.runtime.projection, self.runtime.writer = self.binding.projection, self.binding.writer
        self.relay = self._relay(self.binding)
        old.close()

    def close(self) -> None:
        self.publisher.close()
        self.binding.close()


class ThreadApplier:
    """The applier in the worker's own process (``CARELEDGER_APPLY_PROCESS=0``)."""

    def __init__(self, settings: Settings, projection: str, source: StoreSource) -> None:
        self.state = Applying(settings, projection, source)
        self.lock = threading.Lock()

    def apply(self, raws: list[RawRecord]) -> BatchReport:
        with self.lock:
            return self.state.apply(raws)

    def housekeeping(self, now: datetime, sweep: bool, escalate_after: timedelta) -> Housekept | None:
        with self.lock:
            return self.state.housekeeping(now, sweep, escalate_after)

    def drain(self) -> int:
        with self.lock:
            return self.state.drain()

    def switch(self) -> None:
        with self.lock:
            self.state.switch()

    def set_stopping(self) -> None:
        self.state.runtime.stopping = True

    def stop(self) -> None:
        with self.lock:
            self.state.close()


class ProcessApplier:
    """The applier in a child process; requests go over a pipe, one at a time."""

    def __init__(self, settings: Settings, projection: str, source: StoreSource,
                 start_timeout_s: float = 600.0) -> None:
        context = mp.get_context("spawn")  # a clean interpreter: no faust or event loop state inherited
        self.conn, child = context.Pipe()
        self.stopping = context.Event()
        self.lock = threading.Lock()
        self.process = context.Process(target=_serve, args=(child, settings, projection, source, self.stopping),
                                       name=f"careledger-apply-{projection}", daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(start_timeout_s):
            raise ApplyFailed(f"the applier process of {projection} did not start within {start_timeout_s:.0f} s")
        self._answer()  # ("ok", None) once its store is open

    def _call(self, *request: Any) -> Any:
        with self.lock:
            try:
                self.conn.send(request)
            except (BrokenPipeError, OSError) as exc:
                raise ApplyFailed(f"the applier process is gone ({exc})") from None
            return self._answer()

    def _answer(self) -> Any:
        try:
            reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise ApplyFailed(f"the applier process died (exit code {self.process.exitcode}): {exc!r}") from None
        if reply[0] == "error":
            raise ApplyFailed(f"{reply[1]}: {reply[2]}")
        return reply[1]

    def apply(self, raws: list[RawRecord]) -> BatchReport:
        report: BatchReport = self._call("apply", raws)
        return report

    def housekeeping(self, now: datetime, sweep: bool, escalate_after: timedelta) -> Housekept | None:
        done: Housekept | None = self._call("housekeeping", now, sweep, escalate_after)
        return done

    def drain(self) -> int:
        published: int = self._call("drain")
        return published

    def switch(self) -> None:
        self._call("switch")

    def set_stopping(self) -> None:
        self.stopping.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.process.is_alive():
            try:
                self._call("stop")
            except ApplyFailed:
                pass
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
        self.conn.close()


def _serve(conn: Connection, settings: Settings, projection: str, source: StoreSource, stopping: MpEvent) -> None:
    """The applier process: answer requests until ``stop`` or until the worker goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when to stop, and says so
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(settings, f"processor-{projection}")
    try:
        tracing.configure(settings, f"processor-{projection}")  # a spawned interpreter: its own provider
        state = Applying(settings, projection, source)
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, which crashes with it
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    threading.Thread(target=_when_stopping, args=(stopping, state), daemon=True).start()
    conn.send(("ok", None))
    handlers: dict[str, Callable[..., Any]] = {"apply": state.apply, "housekeeping": state.housekeeping,
                                               "drain": state.drain, "switch": state.switch}
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the worker is gone
            if request[0] == "stop":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", handlers[request[0]](*request[1:])))
            except Exception as exc:  # noqa: BLE001 - the worker decides (it crashes and restarts)
                log.error("applier: %s failed: %s: %s", request[0], type(exc).__name__, exc)
                conn.send(("error", type(exc).__name__, str(exc)))
    finally:
        state.close()
        tracing.shutdown()


def _when_stopping(stopping: MpEvent, state: Applying) -> None:
    stopping.wait()
    state.runtime.stopping = True


def start_applier(settings: Settings, projection: str, source: StoreSource) -> Applier:
    """The applier the settings ask for (``Settings.apply_process``)."""
    if settings.apply_process:
        return ProcessApplier(settings, projection, source)
    return ThreadApplier(settings, projection, source)


__all__ = ["Applier", "ApplyFailed", "BatchReport", "Housekept", "ProcessApplier", "ThreadApplier",
           "start_applier"]
