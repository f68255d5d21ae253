"""``GET /api/alerts/stream``: alert changes as Server-Sent Events, resumable by ``Last-Event-ID``.

The source is the store's ``alert_outbox`` table, written by the processor in the same transaction
as the alerts themselves, so the stream neither depends on Kafka nor lags behind ``/api/alerts``.
Each frame is one outbox row::

    id: <outbox seq>
    event: alert
    data: {"alert_id": ..., "rule": ..., ..., "outbox_seq": <seq>}

(``data`` is exactly the ``careledger.alerts`` message).  A client that reconnects with the header
``Last-Event-ID: <seq>`` (browsers' ``EventSource`` does so by itself) or ``?last_event_id=<seq>``
gets every row with a larger seq, in order: no gap, no repeat.  Without either the stream starts
at the current end (live changes only); ``last_event_id=0`` replays the whole outbox;
``follow=false`` sends what is there and closes (catch-up mode for scripts).

Rows are read with ``seq > :cursor ORDER BY seq LIMIT 500`` (the primary key) every 0.5 s; a
comment line (``: keep-alive``) is sent after 15 s without data so proxies keep the connection
open; the loop ends as soon as the client disconnects.  Seqs are committed in order: SQLite has a
single writer and the PostgreSQL store serialises its batches with an advisory lock, so a reader
can never see seq N+1 before N.

Policy ``person_level``: caseworkers only receive alerts of their towns (the cursor still moves
past the others, which they never see); admins receive all.  The request is audited when the
stream opens.

Revocation ends open streams: the token is checked again every ``REVALIDATE_S`` seconds (and before
every batch of frames); once it is revoked the stream sends ``event: revoked`` and closes, so a
revoked token receives nothing more than ``REVALIDATE_S`` after ``careledger token revoke``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from projections.api.context import Api
from projections.api.guard import Caller
from projections.api.params import StrictBool
from projections.api.problems import Problem, invalid, responses
from projections.sql import tables as t

POLL_S = 0.5
HEARTBEAT_S = 15.0
REVALIDATE_S = 2.0
READ_BATCH = 500
RETRY_MS = 2000
#: one server-sent event, as the OpenAPI description shows it (``schema`` describes each event)
EVENT_SCHEMA = {
    "type": "object", "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["alert", "revoked"]},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the outbox seq (resume with Last-Event-ID)"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "alert: the careledger.alerts message plus outbox_seq; revoked: {detail}"},
        "retry": {"type": "integer"},
    },
}
REVOKED_FRAME = 'event: revoked\ndata: {"detail":"the token of this stream was revoked"}\n\n'


class OutboxReader:
    """Reads ``alert_outbox`` rows after a seq (store-independent: only the table and an engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def after(self, seq: int, limit: int = READ_BATCH) -> list[tuple[int, str, str]]:
        ob = t.alert_outbox
        with self.engine.connect() as conn:
            rows = conn.execute(select(ob.c.seq, ob.c.alert_id, ob.c.body).where(ob.c.seq > seq)
                                .order_by(ob.c.seq).limit(limit)).all()
        return [(int(s), a, b) for s, a, b in rows]

    def last_seq(self) -> int:
        ob = t.alert_outbox
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(ob.c.seq), 0))).scalar_one())

    def towns_of(self, person_ids: set[str]) -> dict[str, str | None]:
        p = t.persons
        with self.engine.connect() as conn:
            rows = conn.execute(select(p.c.person_id, p.c.town).where(p.c.person_id.in_(sorted(person_ids)))).all()
        return {pid: town for pid, town in rows}


def engine_of(store: Any) -> Engine | None:
    """The SQL engine holding ``alert_outbox``: the store's own, or that of the store an
    ``ActiveStore`` (projections/registry.py) currently points to; None for non-SQL stores."""
    engine = getattr(store, "engine", None)
    if engine is None and callable(getattr(store, "current", None)):
        engine = getattr(store.current(), "engine", None)
    return engine


def frame(seq: int, alert: dict[str, Any]) -> str:
    data = json.dumps({**alert, "outbox_seq": seq}, ensure_ascii=False, separators=(",", ":"))
    return f"id: {seq}\nevent: alert\ndata: {data}\n\n"


def parse_last_event_id(header: str | None, query: int | None) -> int | None:
    """The seq to resume after: the header wins (browsers send it on reconnect), then the query."""
    if header is not None:
        if not header.isascii() or not header.isdigit() or len(header) > 19:
            raise invalid("Last-Event-ID", "must be an outbox seq (a non-negative integer)", where="header")
        return int(header)
    return query


def visible_rows(rows: list[tuple[int, str, str]], towns: frozenset[str] | None,
                 town_of: Callable[[set[str]], dict[str, str | None]]) -> list[tuple[int, dict[str, Any]]]:
    """Decode rows and keep those the caller may see (``towns`` None: all)."""
    decoded = [(seq, json.loads(body)) for seq, _aid, body in rows]
    if towns is None:
        return decoded
    missing = {a["person_id"] for _s, a in decoded if a.get("town") is None and a.get("person_id")}
    looked_up = town_of(missing) if missing else {}
    return [(seq, a) for seq, a in decoded
            if (a.get("town") if a.get("town") is not None else looked_up.get(a.get("person_id"))) in towns]


async def alert_events(
    reader: OutboxReader,
    cursor: int,
    *,
    towns: frozenset[str] | None,
    is_disconnected: Callable[[], Awaitable[bool]],
    poll_s: float = POLL_S,
    heartbeat_s: float = HEARTBEAT_S,
    follow: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    still_allowed: Callable[[], bool] | None = None,
    revalidate_s: float = REVALIDATE_S,
) -> AsyncIterator[str]:
    """SSE text chunks: a ``retry`` hint, then every visible outbox row after ``cursor``, forever
    (until the client leaves, or ``still_allowed()`` -- checked every ``revalidate_s`` -- says no)."""
    yield f"retry: {RETRY_MS}\n\n"
    last_write = clock()
    checked = clock()
    while True:
        if await is_disconnected():
            return
        if still_allowed is not None and clock() - checked >= revalidate_s:
            checked = clock()
            if not await run_in_threadpool(still_allowed):
                yield REVOKED_FRAME
                return
        rows = await run_in_threadpool(reader.after, cursor, READ_BATCH)
        if rows:
            cursor = rows[-1][0]
            shown = await run_in_threadpool(visible_rows, rows, towns, reader.towns_of)
            if shown:
                yield "".join(frame(seq, alert) for seq, alert in shown)
                last_write = clock()
            if len(rows) == READ_BATCH:
                continue  # catching up: read on without waiting
        if not follow:
            return  # caught up, and the caller asked for no live tail
        if clock() - last_write >= heartbeat_s:
            yield ": keep-alive\n\n"
            last_write = clock()
        await sleep(poll_s)


router = APIRouter(tags=["person level"])


@router.get("/api/alerts/stream", summary="Alert changes as Server-Sent Events (resume with Last-Event-ID)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
                             "description": "Server-sent events, one per alert change: id (the outbox seq), "
                                            "event alert, data (the careledger.alerts message plus outbox_seq); "
                                            "event revoked when the token is revoked, then the stream ends"},
                       **responses(s501="The active store keeps no alert outbox (not an SQL store)")})
async def alert_stream(
    api: Api,
    caller: Caller,
    request: Request,
    last_event_id: Annotated[int | None, Query(ge=0, le=2**62, description="resume after this outbox seq "
                                                                          "(the Last-Event-ID header wins)")] = None,
    follow: Annotated[StrictBool, Query(description="false: send what is there and close (catch-up mode)")] = True,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID", pattern="^[0-9]{1,18}$",
                                                       description="resume after this outbox seq (browsers' "
                                                                   "EventSource sends it on reconnect)")] = None,
) -> StreamingResponse:
    engine = await run_in_threadpool(engine_of, api.store)
    if engine is None:
        raise Problem(501, "the alert stream needs the SQL store (its alert_outbox table)")
    reader = OutboxReader(engine)
    cursor = parse_last_event_id(last_event_id_header, last_event_id)
    if cursor is None:
        cursor = await run_in_threadpool(reader.last_seq)
    town_filter = caller.town_filter()
    towns = None if town_filter is None else frozenset(town_filter)

    def still_allowed() -> bool:
        return api.tokens.is_active(caller)

    return StreamingResponse(
        alert_events(reader, cursor, towns=towns, is_disconnected=request.is_disconnected, follow=follow,
                     still_allowed=still_allowed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
