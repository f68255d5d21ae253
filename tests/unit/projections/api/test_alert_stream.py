"""``GET /api/alerts/stream``: SSE frames, resume after Last-Event-ID, filters, heartbeats."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi.testclient import TestClient

from projections.api.alert_stream import POLL_S, REVALIDATE_S, StreamFilter, alert_events, frame, stream_towns
from tests.support.reliability import record
from tests.unit.projections.api.conftest import TOWN_A, TOWN_B, auth


def parse(text: str) -> list[dict[str, Any]]:
    """SSE text → events (``id``, ``event``, ``data``) and comments (``comment``)."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        item: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                item["comment"] = line[1:].strip()
            else:
                name, _, value = line.partition(": ")
                item[name] = value
        out.append(item)
    return out


class FakeOutbox:
    """An outbox in memory; ``outbox_after`` honours the limit like the store."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.reads: list[int] = []

    def outbox_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        self.reads.append(seq)
        return [r for r in self.rows if r["seq"] > seq][:limit]

    def outbox_last_seq(self) -> int:
        return max((r["seq"] for r in self.rows), default=0)


def row(seq: int, town: str | None = TOWN_A, channel: str = "alert", rule: str = "visit_hazard") -> dict[str, Any]:
    message = {"alert_id": f"A{seq}", "rule": rule, "person_id": f"p{seq}", "status": "open"}
    return {"seq": seq, "channel": channel, "message": message, "town": town}


async def collect(gen: Any, n: int) -> list[str]:
    out = []
    async for chunk in gen:
        out.append(chunk)
        if len(out) >= n:
            break
    await gen.aclose()
    return out


ANY = StreamFilter()


def run_stream(reader: FakeOutbox, cursor: int, *, shown_if: StreamFilter = ANY, chunks: int = 50,
               follow: bool = False, disconnect_after: int | None = None, heartbeat_s: float = 15.0) -> str:
    polls = {"n": 0}
    clock = {"t": 0.0}

    async def is_disconnected() -> bool:
        polls["n"] += 1
        return disconnect_after is not None and polls["n"] > disconnect_after

    async def sleep(seconds: float) -> None:
        clock["t"] += seconds

    gen = alert_events(reader, cursor, shown_if=shown_if, is_disconnected=is_disconnected, follow=follow,
                       heartbeat_s=heartbeat_s, clock=lambda: clock["t"], sleep=sleep)
    return "".join(asyncio.run(collect(gen, chunks)))


def ids(text: str) -> list[int]:
    return [int(e["id"]) for e in parse(text) if "id" in e]


def test_frame_format() -> None:
    text = frame(12, {"alert_id": "A1", "town": TOWN_A})
    assert text == f'id: 12\nevent: alert\ndata: {{"alert_id":"A1","town":"{TOWN_A}","outbox_seq":12}}\n\n'


def test_resume_after_last_event_id_has_no_gap_and_no_repeat() -> None:
    reader = FakeOutbox([row(s) for s in range(1, 1201)])  # more than one read batch
    first = ids(run_stream(reader, 0))
    assert first == list(range(1, 1201))
    # a client that saw up to 700 reconnects with Last-Event-ID: 700
    resumed = ids(run_stream(reader, 700))
    assert resumed == list(range(701, 1201))
    assert ids(run_stream(reader, 1200)) == []


def test_filters_move_the_cursor_past_hidden_rows() -> None:
    reader = FakeOutbox([row(1, TOWN_A), row(2, TOWN_B), row(3, None), row(4, TOWN_A),
                         row(5, TOWN_A, "warning", "visit_overdue"), row(6, TOWN_B, "warning", "need_unmet")])
    def shown(**f: Any) -> list[int]:
        return ids(run_stream(reader, 0, shown_if=StreamFilter(**f)))
    assert shown(towns=frozenset({TOWN_A})) == [1, 4, 5]
    assert shown(towns=frozenset({TOWN_B})) == [2, 6]
    assert shown(towns=frozenset()) == []
    assert shown() == [1, 2, 3, 4, 5, 6]
    assert shown(kinds=frozenset({"warning"})) == [5, 6]
    assert shown(kinds=frozenset({"alert"}), towns=frozenset({TOWN_A})) == [1, 4]
    assert shown(rules=frozenset({"visit_overdue", "need_unmet"}), towns=frozenset({TOWN_B})) == [6]
    events = parse(run_stream(reader, 4))
    assert [e["event"] for e in events if "id" in e] == ["warning", "warning"]


def test_a_caseworker_cannot_widen_her_towns() -> None:
    assert stream_towns(None, None) is None
    assert stream_towns(None, [TOWN_B]) == {TOWN_B}
    assert stream_towns([TOWN_A], None) == {TOWN_A}
    assert stream_towns([TOWN_A], [TOWN_A, TOWN_B]) == {TOWN_A}
    assert stream_towns([TOWN_A], [TOWN_B]) == frozenset()


def test_live_tail_heartbeat_and_disconnect() -> None:
    reader = FakeOutbox([row(1)])
    # follow: polls every POLL_S; no data for 30 polls → a comment; the client leaves after 40 → the loop ends
    text = run_stream(reader, 0, follow=True, disconnect_after=40, heartbeat_s=30 * POLL_S)
    events = parse(text)
    assert events[0] == {"retry": "2000"}
    assert ids(text) == [1]
    assert {"comment": "keep-alive"} in events
    assert len(reader.reads) == 40  # stopped polling after the disconnect


def test_endpoint_replays_and_resumes(client: TestClient, tokens: dict[str, str], store: Any) -> None:
    outbox = store.outbox_after(0)
    assert len(outbox) >= 2
    all_seqs = [r["seq"] for r in outbox]
    answer = client.get("/api/alerts/stream?last_event_id=0&follow=false", headers=auth(tokens["admin"]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [e for e in parse(answer.text) if "id" in e]
    assert [int(e["id"]) for e in events] == all_seqs
    assert all(e["event"] == "alert" for e in events)
    first = json.loads(events[0]["data"])
    assert first["outbox_seq"] == all_seqs[0] and first["alert_id"] == outbox[0]["message"]["alert_id"]
    # resume: the header wins over the query parameter
    resumed = client.get("/api/alerts/stream?last_event_id=0&follow=false",
                         headers={**auth(tokens["admin"]), "Last-Event-ID": str(all_seqs[0])})
    assert ids(resumed.text) == all_seqs[1:]
    # without a position: only what comes after now
    assert ids(client.get("/api/alerts/stream?follow=false", headers=auth(tokens["admin"])).text) == []


def test_endpoint_town_filter_and_errors(client: TestClient, tokens: dict[str, str], store: Any) -> None:
    url = "/api/alerts/stream?last_event_id=0&follow=false"
    towns_a = {json.loads(e["data"]).get("town") for e in parse(client.get(url, headers=auth(tokens["caseworker"])).text)
               if "data" in e}
    towns_b = {json.loads(e["data"]).get("town") for e in parse(client.get(url, headers=auth(tokens["caseworker_b"])).text)
               if "data" in e}
    assert towns_a == {TOWN_A} and towns_b == {TOWN_B}
    assert client.get(url).status_code == 401
    assert client.get(url, headers=auth(tokens["viewer"])).status_code == 403
    bad = client.get(url, headers={**auth(tokens["admin"]), "Last-Event-ID": "abc"})
    assert bad.status_code == 422
    assert client.get("/api/alerts/stream?last_event_id=-1", headers=auth(tokens["admin"])).status_code == 422
    audit = client.get("/api/audit", headers=auth(tokens["admin"])).json()["items"]
    assert any(r["path"] == "/api/alerts/stream" and r["token_name"] == "cw-a" for r in audit)


def test_the_generator_stops_when_the_token_is_revoked() -> None:
    reader = FakeOutbox([row(1)])
    checks = {"n": 0}

    def still_allowed() -> bool:
        checks["n"] += 1
        return checks["n"] < 3

    clock = {"t": 0.0}

    async def sleep(seconds: float) -> None:
        clock["t"] += seconds

    async def connected() -> bool:
        return False

    gen = alert_events(reader, 0, shown_if=StreamFilter(), is_disconnected=connected, follow=True, still_allowed=still_allowed,
                       revalidate_s=2.0, clock=lambda: clock["t"], sleep=sleep)
    text = "".join(asyncio.run(collect(gen, 1000)))
    assert ids(text) == [1]
    assert parse(text)[-1]["event"] == "revoked"
    assert clock["t"] <= 3 * (2.0 + 0.5)  # checked every 2 s of stream time, polled every 0.5 s


def test_revoking_the_token_ends_an_open_stream(app: Any, tokens: dict[str, str], store: Any) -> None:
    """Issue 15 item 8: an open stream (follow=true, never ends by itself) of a caseworker whose token
    is revoked sends ``event: revoked`` and closes within REVALIDATE_S plus one poll."""
    token = app.state.tokens.create("stream-cw", "caseworker", [TOWN_A])

    async def scenario() -> tuple[list[bytes], float, int]:
        chunks: list[bytes] = []
        statuses: list[int] = []
        first = asyncio.Event()
        closed = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await closed.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif message.get("body"):
                chunks.append(message["body"])
                first.set()

        scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "root_path": "",
                 "path": "/api/alerts/stream", "raw_path": b"/api/alerts/stream", "query_string": b"last_event_id=0",
                 "headers": [(b"host", b"test"), (b"authorization", f"Bearer {token}".encode())],
                 "client": ("127.0.0.1", 1), "server": ("test", 80)}
        task = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(first.wait(), 10)
        await asyncio.sleep(1.0)
        assert not task.done()  # a live stream: still open
        revoked_at = time.monotonic()
        await asyncio.to_thread(app.state.tokens.revoke, "stream-cw")
        try:
            await asyncio.wait_for(task, REVALIDATE_S + 5)
        finally:
            closed.set()
        return chunks, time.monotonic() - revoked_at, statuses[0]

    chunks, seconds, status = asyncio.run(scenario())
    text = b"".join(chunks).decode()
    assert status == 200
    assert {json.loads(e["data"]).get("town") for e in parse(text) if e.get("event") == "alert"} == {TOWN_A}
    assert parse(text)[-1]["event"] == "revoked"
    assert seconds <= REVALIDATE_S + 1.5, seconds
    record("fault", "alert stream: token revoked while the stream is open",
           claim="the open stream ended {seconds} s after the revocation (bound: {bound} s)",
           seconds=round(seconds, 2), bound=REVALIDATE_S + 0.5)
