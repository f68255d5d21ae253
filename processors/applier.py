"""Where a live worker applies its batches: in a thread of the faust process, or in a process of
its own (``CARELEDGER_APPLY_PROCESS``, on by default).

Why a process: faust's per-event machinery (consumer thread → conductor → channel → stream →
agent) costs about as much CPU per event as the whole projection does (profile in
docs/performance.md).  In one process both share one GIL, so a worker could never go faster than
about half of a bare faust agent.  In two processes they run on two cores: the faust process only
receives records, guards their positions and ships each batch (raw bytes) to the applier process,
which decodes, folds, writes and commits through the projection runtime - the same runtime, the
same commit order, positions in the same transaction.  Exactly-once does not change: the applier
is the only writer of the worker's batches and applies them one at a time, in the order they were
sent, and none after one that failed.  The applier also owns everything else that writes:
housekeeping (the warning sweep, escalation) and the outbox relay.

Requests to the applier process, answered in the order they were sent (the worker keeps up to two
batches in flight; ``ProcessApplier`` matches the answers to them):

* ``apply(raws)`` (``submit`` + ``collect``) → a :class:`BatchReport` (cumulative stats, dead
  letters, alert changes published, where the applier's time went);
* ``housekeeping(now, sweep, escalate_after)`` → what became due, was cleared, was escalated;
* ``drain()`` → outbox rows published;
* ``switch()`` → reopen the store (a replay swapped another one in);
* ``stop()``.

``set_stopping()`` is a signal (``SIGUSR1``), not a request: it must reach an applier that is
inside a batch, waiting out a store outage.
A failure inside the applier comes back as :class:`ApplyFailed` (the worker then crashes and is
restarted: the batch is read again from the store's positions).  An applier that dies takes the
worker down the same way; a worker that dies closes the connection, and the applier exits.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from multiprocessing.connection import Connection
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
from processors.runtime.heap import GcClock, settle_after_start
from processors.runtime.records import BatchStats, RawRecord
from producers.publisher import EventPublisher

log = logging.getLogger("careledger.processor")

#: the worker tells its applier process it is stopping (a store outage is no longer waited out)
STOPPING_SIGNAL = signal.SIGUSR1


class ApplyFailed(RuntimeError):
    """The applier could not apply a batch (its error, by type and message)."""


@dataclass
class BatchReport:
    """What the applier did, for the faust process's metrics and logs."""

    stats: BatchStats  # cumulative
    dead_letters: int = 0  # cumulative: records handed to the DLQ topic
    alert_changes: list[tuple[str, str]] = field(default_factory=list)  # (rule, status) since the last report
    #: cumulative seconds the applier spent waiting for requests, receiving them and working on them
    #: (working: up to the request before this one - this one is still being answered)
    spent: dict[str, float] = field(default_factory=dict)


@dataclass
class Housekept:
    due: int = 0
    cleared: int = 0
    escalated: int = 0


class Applier(Protocol):
    def submit(self, raws: list[RawRecord]) -> int:
        """Hand a batch over without waiting for it; the ticket to :meth:`collect` its report.
        Batches are applied in the order they were submitted; after one fails, none is."""

    def collect(self, ticket: int) -> BatchReport:
        """Wait for a submitted batch (tickets are collected in the order they were given)."""

    def apply(self, raws: list[RawRecord]) -> BatchReport:
        """``collect(submit(raws))``."""

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
        self.failed: str | None = None  # the error of a batch that failed: no later batch is applied
        self.spent = {"waiting": 0.0, "receiving": 0.0, "working": 0.0}  # kept by whoever hands it requests

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
        # with batches submitted ahead, the next may already be here when one fails: it must not be
        # applied over the hole (the worker crashes and reads both again from the store's positions)
        if self.failed is not None:
            raise ApplyFailed(f"not applied: an earlier batch failed ({self.failed})")
        try:
            self.runtime.apply(raws)
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            raise
        return BatchReport(self.runtime.stats, self.dead_letters, self.counting.take(), dict(self.spent))

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
        self.submitted: dict[int, list[RawRecord]] = {}
        self.tickets = itertools.count()

    def submit(self, raws: list[RawRecord]) -> int:
        ticket = next(self.tickets)
        self.submitted[ticket] = raws
        return ticket

    def collect(self, ticket: int) -> BatchReport:
        with self.lock:
            started = time.perf_counter()
            try:
                return self.state.apply(self.submitted.pop(ticket))
            finally:
                self.state.spent["working"] += time.perf_counter() - started

    def apply(self, raws: list[RawRecord]) -> BatchReport:
        return self.collect(self.submit(raws))

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
    """The applier in a child process; requests go over a socket pair and are answered in order.

    Requests are *pipelined*: a batch can be sent while the one before is still being applied, so
    the applier reads the next batch as soon as it has answered the last, instead of idling while
    the faust process receives the answer, wakes its agent and sends again (10 % of the applier's
    time in bench/pipeline.py's 1M run).  Each request gets a ticket and a future when it is sent;
    one reader thread receives the answers in order and resolves the futures, so an answer nobody
    waits for (a batch sent as the worker was cancelled) never holds up the ones after it.

    The child is a fresh interpreter (``python -m processors.applier_process``: no faust or event
    loop state inherited) started with :mod:`subprocess`, not :mod:`multiprocessing`: a spawned
    ``multiprocessing`` child brings multiprocessing's resource tracker, a third process of 13 MB
    that the worker has no use for (bench/pipeline.py counts it)."""

    def __init__(self, settings: Settings, projection: str, source: StoreSource,
                 start_timeout_s: float = 600.0) -> None:
        ours, theirs = socket.socketpair()
        self.send_lock = threading.Lock()  # held while a request is sent and its future registered
        self.sent = 0  # tickets handed out
        self.answers: dict[int, concurrent.futures.Future[Any]] = {}  # ticket -> its answer, until collected
        self.gone: ApplyFailed | None = None  # set once the applier process has gone away
        self.reader: threading.Thread | None = None  # receives the answers, once the process has started
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "processors.applier_process", str(theirs.fileno()),
                                             projection], pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send((settings, projection, source))
        if not self.conn.poll(start_timeout_s):
            self.stop(timeout_s=1.0)
            raise ApplyFailed(f"the applier process of {projection} did not start within {start_timeout_s:.0f} s")
        try:
            started = self._result(self.conn.recv())  # ("ok", None) once its store is open
        except (EOFError, OSError) as exc:
            started = self._died(exc)
        if isinstance(started, ApplyFailed):
            self.stop(timeout_s=10.0)
            raise started
        self.reader = threading.Thread(target=self._read_answers, name=f"applier-answers-{projection}", daemon=True)
        self.reader.start()

    def _call(self, *request: Any) -> Any:
        return self._receive(self._send(request))

    def _send(self, request: tuple[Any, ...]) -> int:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self.send_lock:
            ticket = self.sent
            self.answers[ticket] = future
            self.sent += 1
            if self.gone is None:
                try:
                    self.conn.send(request)
                except (BrokenPipeError, OSError) as exc:  # no answer will come, to this or any later request
                    self.gone = ApplyFailed(f"the applier process is gone ({exc})")
            if self.gone is not None:
                future.set_exception(self.gone)
        return ticket

    def _receive(self, ticket: int) -> Any:
        try:
            return self.answers[ticket].result()
        finally:
            del self.answers[ticket]

    def _died(self, exc: BaseException) -> ApplyFailed:
        return ApplyFailed(f"the applier process died (exit code {self.process.poll()}): {exc!r}")

    @staticmethod
    def _result(reply: tuple[Any, ...]) -> Any:
        """An answer's value, or its error as an :class:`ApplyFailed` (not raised)."""
        return ApplyFailed(f"{reply[1]}: {reply[2]}") if reply[0] == "error" else reply[1]

    def _read_answers(self) -> None:
        """The reader thread: answers arrive in the order the requests were sent; once the process
        is gone (end of the connection), every request still waiting fails, and so does any later."""
        ticket = 0
        while True:
            try:
                reply = self.conn.recv()
            except (EOFError, OSError) as exc:
                with self.send_lock:
                    self.gone = self.gone or self._died(exc)
                    waiting = [answer for t, answer in list(self.answers.items()) if t >= ticket]
                for answer in waiting:
                    if not answer.done():
                        answer.set_exception(self.gone)
                return
            pending = self.answers.get(ticket)
            ticket += 1
            if pending is None or pending.done():
                continue
            result = self._result(reply)
            if isinstance(result, ApplyFailed):
                pending.set_exception(result)
            else:
                pending.set_result(result)

    def submit(self, raws: list[RawRecord]) -> int:
        return self._send(("apply", raws))

    def collect(self, ticket: int) -> BatchReport:
        report: BatchReport = self._receive(ticket)
        return report

    def apply(self, raws: list[RawRecord]) -> BatchReport:
        return self.collect(self.submit(raws))

    def housekeeping(self, now: datetime, sweep: bool, escalate_after: timedelta) -> Housekept | None:
        done: Housekept | None = self._call("housekeeping", now, sweep, escalate_after)
        return done

    def drain(self) -> int:
        published: int = self._call("drain")
        return published

    def switch(self) -> None:
        self._call("switch")

    def set_stopping(self) -> None:
        if self.process.poll() is None:  # not exited (and not reaped: the pid is still the child's)
            try:
                os.kill(self.process.pid, STOPPING_SIGNAL)
            except ProcessLookupError:
                pass

    def stop(self, timeout_s: float = 60.0) -> None:
        """After what was sent before it (the applier answers requests in order); answers nobody
        collected (a batch sent as the worker was cancelled) are dropped with the connection."""
        if self.process.poll() is None:
            try:
                self._send(("stop",))
            except ApplyFailed:
                pass
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:  # it ends at the end of the connection, which the process's exit closed
            self.reader.join(10)
        self.conn.close()


def serve(conn: Connection) -> None:
    """The applier process (``processors/applier_process.py``): its settings, projection and store
    source come first on the connection; then it answers requests until ``stop`` or until the
    worker goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when to stop, and says so
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        settings, projection, source = conn.recv()
    except (EOFError, OSError):
        return  # the worker is gone before it said what to apply
    configure_logging(settings, f"processor-{projection}")
    try:
        tracing.configure(settings, f"processor-{projection}")  # a fresh interpreter: its own provider
        state = Applying(settings, projection, source)
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, which crashes with it
        conn.send(("error", type(exc).__name__, str(exc)))
        return

    def on_stopping(signum: int, frame: Any) -> None:  # set_stopping: no longer wait out a store outage
        state.runtime.stopping = True

    signal.signal(STOPPING_SIGNAL, on_stopping)  # before "ok": the worker signals only after it
    spent = state.spent  # where the applier's time goes: logged at the end, in every report
    settle_after_start()  # the garbage collector leaves the start-up heap alone (processors/runtime/heap.py)
    GcClock(spent).install()
    conn.send(("ok", None))
    handlers: dict[str, Callable[..., Any]] = {"apply": state.apply, "housekeeping": state.housekeeping,
                                               "drain": state.drain, "switch": state.switch}
    try:
        while True:
            started = time.perf_counter()
            try:
                conn.poll(None)
                arrived = time.perf_counter()
                request = conn.recv()
            except (EOFError, OSError):
                return  # the worker is gone
            received = time.perf_counter()
            spent["waiting"] += arrived - started
            spent["receiving"] += received - arrived
            if request[0] == "stop":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", handlers[request[0]](*request[1:])))
            except Exception as exc:  # noqa: BLE001 - the worker decides (it crashes and restarts)
                log.error("applier: %s failed: %s: %s", request[0], type(exc).__name__, exc)
                conn.send(("error", type(exc).__name__, str(exc)))
            spent["working"] += time.perf_counter() - received
    finally:
        log.info("applier of %s stopped: %.1f s waiting for requests, %.1f s receiving them, %.1f s working "
                 "(%.1f s of it in the garbage collector)", projection, spent["waiting"], spent["receiving"],
                 spent["working"], spent["gc"])
        state.close()
        tracing.shutdown()


def start_applier(settings: Settings, projection: str, source: StoreSource) -> Applier:
    """The applier the settings ask for (``Settings.apply_process``)."""
    if settings.apply_process:
        return ProcessApplier(settings, projection, source)
    return ThreadApplier(settings, projection, source)


__all__ = ["Applier", "ApplyFailed", "BatchReport", "Housekept", "ProcessApplier", "ThreadApplier",
           "start_applier"]
