"""The audit of open alert streams: the persons of a frame are named under the stream's audit row
before the frame is sent.

Why one writer: the outbox feed wakes every open stream at once, and each has a frame about the
same new persons - one write per stream was one SQLite transaction per stream per change (each
waiting for the worker's batch commit).  Streams that have frames to send in the same turn of the
event loop hand their persons to :class:`SubjectWrites`, which writes them all in one transaction
and then lets them send; a failed write fails every one of them (their frames are not sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from fastapi.concurrency import run_in_threadpool

from projections.audit_tables import NamedOnce


class SubjectsLog(Protocol):
    """What the stream audit needs of the API's audit log (``TokenStore``)."""

    def add_audit_subjects_of(self, named: Sequence[tuple[int, Iterable[str]]]) -> None: ...


class SubjectWrites:
    """Collects the persons the open streams are about to send and writes them in one transaction."""

    def __init__(self, log: SubjectsLog) -> None:
        self.log = log
        self._pending: list[tuple[int, set[str]]] = []
        self._written: asyncio.Future[None] | None = None

    async def name(self, audit_id: int, persons: set[str]) -> None:
        """Returns once ``persons`` are written under ``audit_id`` (raises if the write failed)."""
        self._pending.append((audit_id, persons))
        if self._written is None:  # the first this turn: write after the others of this turn joined
            self._written = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._write)
        await asyncio.shield(self._written)  # a stream that goes away does not cancel the others' write

    def _write(self) -> None:
        pending, written = self._pending, self._written
        self._pending, self._written = [], None
        assert written is not None
        task = asyncio.ensure_future(run_in_threadpool(self.log.add_audit_subjects_of, pending))
        task.add_done_callback(lambda done: _settle(written, done))


def _settle(written: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    if done.cancelled():
        written.cancel()
    elif done.exception() is not None:
        written.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        written.set_result(None)


class StreamAudit:
    """``alert_events``' audit: the persons of a stream's rows it has not named yet, written
    before the rows are sent (the stream's audit row is written when its response starts)."""

    def __init__(self, writes: SubjectWrites, audit: dict[str, Any]) -> None:
        self.writes = writes
        self.audit = audit
        self.once = NamedOnce()

    async def __call__(self, rows: list[dict[str, Any]]) -> None:
        persons = self.once.fresh(r["message"].get("person_id") for r in rows)
        if persons:
            await self.writes.name(self.audit["id"], persons)


__all__ = ["StreamAudit", "SubjectWrites"]
