"""``GET /api/alerts/stream``: alert changes and need warnings as Server-Sent Events, resumable.

The source is the store's outbox (``alert_outbox``), written by the processor in the same
transaction as the alerts and warning notices themselves, so the stream neither depends on Kafka
nor lags behind ``/api/alerts``.  Each frame is one outbox row::

    id: <outbox seq>
    event: alert | warning
    data: {"alert_id": ..., "rule": ..., ..., "outbox_seq": <seq>}

``alert`` frames carry exactly the ``careledger.alerts`` message (an escalation has
``"escalated": true``); ``warning`` frames the ``careledger.warnings`` one (``kind``
``warning.due`` or ``warning.cleared``).  A client that reconnects with the header
``Last-Event-ID: <seq>`` (browsers' ``EventSource`` does so by itself) or ``?last_event_id=<seq>``
gets every row with a larger seq, in order: no gap, no repeat.  Without either the stream starts
at the current end (live changes only); ``last_event_id=0`` replays the whole outbox;
``follow=false`` sends what is there and closes (catch-up mode for scripts).

Filters, the same as a webhook subscription's: ``kind`` (alert / warning), ``rule`` and ``town``
(repeatable).  Towns are the persons' *current* towns.  Caseworkers only ever receive their own
towns (the cursor still moves past the others, which they never see); admins receive all.  The
request is audited when the stream opens, and each person a frame is about is named under that
audit row before the frame is sent (``stream_audit.py``: one write for every stream with frames to send).

A following stream reads through the process's shared outbox feed (``outbox_feed.py``: one
query per 0.05 s for all open streams, rows woken to them as they arrive); one that resumes from
further back than the feed holds reads the store itself, 500 rows at a time, until it is caught
up (``follow=false`` always reads the store).  A comment line (``: keep-alive``) is sent after 15 s
without data so proxies keep the connection open; the loop ends as soon as the client leaves.
Revocation ends open streams: the token is checked again every ``REVALIDATE_S`` seconds; once it
is revoked the stream sends ``event: revoked`` and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints

from projections.api.context import Api
from projections.api.guard import AUDIT_KEY, Caller
from projections.api.outbox_feed import READ_BATCH, Outbox, OutboxFeed
from projections.api.params import StrictBool
from projections.api.problems import invalid, responses
from projections.api.stream_audit import StreamAudit

POLL_S = 0.1  # a stream reading the store itself (no feed) polls this often; the query is on the primary key
WAKE_S = 1.0  # a stream waiting on the feed wakes at least this often (disconnect, revocation, keep-alive)
HEARTBEAT_S = 15.0
REVALIDATE_S = 2.0
RETRY_MS = 2000
#: one server-sent event, as the OpenAPI description shows it (``schema`` describes each event)
EVENT_SCHEMA = {
    "type": "object", "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["alert", "warning", "revoked"]},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the outbox seq (resume with Last-Event-ID)"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "alert: the careledger.alerts message plus outbox_seq; warning: the "
                                "careledger.warnings one; revoked: {detail}"},
        "retry": {"type": "integer"},
    },
}
REVOKED_FRAME = 'event: revoked\ndata: {"detail":"the token of this stream was revoked"}\n\n'


@dataclass(frozen=True)
class StreamFilter:
    """Which rows a stream shows: ``None`` means any."""

    kinds: frozenset[str] | None = None
    rules: frozenset[str] | None = None
    towns: frozenset[str] | None = None  # the caller's towns, narrowed by ``?town=``

    def shows(self, item: dict[str, Any]) -> bool:
        return ((self.kinds is None or item["channel"] in self.kinds)
                and (self.rules is None or item["message"].get("rule") in self.rules)
                and (self.towns is None or item["town"] in self.towns))


def frame(seq: int, message: dict[str, Any], event: str = "alert") -> str:
    data = json.dumps({**message, "outbox_seq": seq}, ensure_ascii=False, separators=(",", ":"))
    return f"id: {seq}\nevent: {event}\ndata: {data}\n\n"


def parse_last_event_id(header: str | None, query: int | None) -> int | None:
    """The seq to resume after: the header wins (browsers send it on reconnect), then the query."""
    if header is not None:
        if not header.isascii() or not header.isdigit() or len(header) > 19:
            raise invalid("Last-Event-ID", "must be an outbox seq (a non-negative integer)", where="header")
        return int(header)
    return query


async def alert_events(
    outbox: Outbox,
    cursor: int,
    *,
    shown_if: StreamFilter,
    is_disconnected: Callable[[], Awaitable[bool]],
    poll_s: float = POLL_S,
    heartbeat_s: float = HEARTBEAT_S,
    follow: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    still_allowed: Callable[[], bool] | None = None,
    revalidate_s: float = REVALIDATE_S,
    feed: OutboxFeed | None = None,
    audit: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
) -> AsyncIterator[str]:
    """SSE text chunks: a ``retry`` hint, then every outbox row after ``cursor`` that
    ``shown_if`` shows, forever
    (until the client leaves, or ``still_allowed()`` -- checked every ``revalidate_s`` -- says no).
    With a ``feed`` (following streams of the API), rows come from it wherever it holds them.
    ``audit(rows)`` runs before the rows are sent: if it fails, they are not."""
    yield f"retry: {RETRY_MS}\n\n"
    last_write = clock()
    checked = clock()
    async with feed.subscribed() if feed is not None else contextlib.nullcontext():
        while True:
            if await is_disconnected():
                return
            if still_allowed is not None and clock() - checked >= revalidate_s:
                checked = clock()
                if not await run_in_threadpool(still_allowed):
                    yield REVOKED_FRAME
                    return
            rows = feed.rows_after(cursor, READ_BATCH) if feed is not None else None
            joins_feed_at = None
            if rows is None:  # no feed, or the cursor is further back than it holds: the store
                held_from = feed.base if feed is not None else None  # read first: all up to it was committed
                rows = await run_in_threadpool(outbox.outbox_after, cursor, READ_BATCH)
                if held_from is not None and len(rows) < READ_BATCH:
                    joins_feed_at = held_from
            if rows:
                cursor = rows[-1]["seq"]
                shown = [r for r in rows if shown_if.shows(r)]
                if shown:
                    if audit is not None:
                        await audit(shown)
                    yield "".join(frame(r["seq"], r["message"], r["channel"]) for r in shown)
                    last_write = clock()
                if len(rows) == READ_BATCH:
                    continue  # catching up: read on without waiting
            if joins_feed_at is not None and joins_feed_at > cursor:
                # the store has nothing more to show up to the feed's window, only hidden rows (a
                # hand-over's floor, erased rows): join the feed there - below it, every wait
                # returned at once and the stream read the store in a busy loop
                cursor = joins_feed_at
            if not follow:
                return  # caught up, and the caller asked for no live tail
            if clock() - last_write >= heartbeat_s:
                yield ": keep-alive\n\n"
                last_write = clock()
            if feed is not None:
                await feed.wait(cursor, min(WAKE_S, revalidate_s))
            else:
                await sleep(poll_s)


router = APIRouter(tags=["person level"])


@router.get("/api/alerts/stream", summary="Alert changes and need warnings as Server-Sent Events (resumable)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
                             "description": "Server-sent events, one per change: id (the outbox seq), event alert "
                                            "(the careledger.alerts message plus outbox_seq) or warning (the "
                                            "careledger.warnings message); event revoked when the token is "
                                            "revoked, then the stream ends"},
                       **responses()})
async def alert_stream(
    api: Api,
    caller: Caller,
    request: Request,
    last_event_id: Annotated[int | None, Query(ge=0, le=2**62, description="resume after this outbox seq "
                                                                          "(the Last-Event-ID header wins)")] = None,
    follow: Annotated[StrictBool, Query(description="false: send what is there and close (catch-up mode)")] = True,
    kind: Annotated[list[Literal["alert", "warning"]] | None, Query(
        description="only these kinds of change (repeatable; default: both)")] = None,
    rule: Annotated[list[Annotated[str, StringConstraints(max_length=64)]] | None, Query(
        max_length=50, description="only these rules (repeatable)")] = None,
    town: Annotated[list[Annotated[str, StringConstraints(max_length=128)]] | None, Query(
        max_length=100, description="only persons now living in these towns (repeatable; a caseworker's are "
                                    "narrowed to her own)")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", pattern="^[0-9]{1,18}$",
                                                       description="resume after this outbox seq (browsers' "
                                                                   "EventSource sends it on reconnect)")] = None,
) -> StreamingResponse:
    store = api.store
    cursor = parse_last_event_id(last_event_id_header, last_event_id)
    if cursor is None:
        cursor = await run_in_threadpool(store.outbox_last_seq)
    shown_if = StreamFilter(kinds=frozenset(kind) if kind else None, rules=frozenset(rule) if rule else None,
                            towns=stream_towns(caller.town_filter(), town))

    def still_allowed() -> bool:
        return api.tokens.is_active(caller)

    audit = StreamAudit(api.stream_audit_writes(), request.scope[AUDIT_KEY])

    return StreamingResponse(
        alert_events(store, cursor, shown_if=shown_if, is_disconnected=request.is_disconnected, follow=follow,
                     still_allowed=still_allowed, feed=api.outbox_feed() if follow else None, audit=audit),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def stream_towns(allowed: list[str] | None, asked: list[str] | None) -> frozenset[str] | None:
    """The towns a stream shows: the caller's (None: all) narrowed to those asked for."""
    if asked is None:
        return None if allowed is None else frozenset(allowed)
    return frozenset(asked) if allowed is None else frozenset(asked) & frozenset(allowed)
