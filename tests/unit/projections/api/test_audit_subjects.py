"""Every person a list or a stream shows is findable in the audit log under that person.

A subject-access request ("who has read my data?") asks ``/api/audit?person_id=…``; a list of alerts or
warnings, or the alert stream, shows many persons in one request, and each of them must be found
there - not only the person a URL named."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from projections.api.alert_stream import StreamFilter, alert_events
from projections.api.auth import TokenStore
from projections.api.stream_audit import StreamAudit, SubjectWrites
from tests.unit.projections.api.conftest import TOWN_A, TOWN_B, auth
from tests.unit.projections.api.test_alert_stream import FakeOutbox, collect, row


def audited_reads(client: TestClient, admin: str, person_id: str) -> list[tuple[str | None, str]]:
    answer = client.get(f"/api/audit?person_id={person_id}&limit=1000", headers=auth(admin)).json()
    return [(row["token_name"], row["path"]) for row in reversed(answer["items"])]


def test_every_person_a_list_shows_is_audited_under_that_person(client: TestClient, tokens: dict[str, str]) -> None:
    shown = client.get("/api/alerts", headers=auth(tokens["caseworker"])).json()["items"]
    assert {item["person_id"] for item in shown} == {"a1"}  # the duplicate payment in town A
    warned = client.get("/api/warnings?as_of=2024-06-30", headers=auth(tokens["caseworker"])).json()["items"]
    assert {item["person_id"] for item in warned} >= {"a2"}
    for person in {item["person_id"] for item in warned}:
        assert ("cw-a", "/api/warnings") in audited_reads(client, tokens["admin"], person)
    assert ("cw-a", "/api/alerts") in audited_reads(client, tokens["admin"], "a1")
    # a person the list did not show (another town) is not named by it
    assert audited_reads(client, tokens["admin"], "b1") == []


def test_the_audit_row_of_a_list_says_how_many_persons_it_showed(client: TestClient, tokens: dict[str, str]) -> None:
    client.get("/api/alerts", headers=auth(tokens["admin"]))
    client.get("/api/alerts?status=resolved", headers=auth(tokens["admin"]))
    rows = client.get("/api/audit?token_name=root", headers=auth(tokens["admin"])).json()["items"]
    lists = [row for row in rows if row["path"] == "/api/alerts"]
    assert [row["persons_listed"] for row in lists] == [0, 2]  # newest first: a1 (town A) and b1 (town B)


def test_every_person_the_stream_sent_is_audited_under_that_person(client: TestClient, tokens: dict[str, str]) -> None:
    text = client.get("/api/alerts/stream?last_event_id=0&follow=false", headers=auth(tokens["caseworker_b"])).text
    sent = {json.loads(line[len("data: "):]).get("person_id") for line in text.splitlines()
            if line.startswith("data: {") and "person_id" in line}
    assert sent == {"b1"}
    assert ("cw-b", "/api/alerts/stream") in audited_reads(client, tokens["admin"], "b1")
    assert ("cw-b", "/api/alerts/stream") not in audited_reads(client, tokens["admin"], "a1")


def test_a_list_that_cannot_be_audited_is_not_answered(client: TestClient, app: Any, tokens: dict[str, str],
                                                        monkeypatch: Any) -> None:
    def broken(self: TokenStore, **kwargs: Any) -> int:
        raise RuntimeError("audit table gone")

    monkeypatch.setattr(TokenStore, "audit", broken)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/api/alerts", headers=auth(tokens["caseworker"]))
    assert response.status_code == 500 and "a1" not in response.text


async def never_disconnected() -> bool:
    return False


def test_a_frame_whose_persons_cannot_be_audited_is_not_sent() -> None:
    named: list[set[str]] = []

    async def audit(rows: list[dict[str, Any]]) -> None:
        named.append({r["message"]["person_id"] for r in rows})
        raise RuntimeError("audit table gone")

    outbox = FakeOutbox([row(1, TOWN_A), row(2, TOWN_B), row(3, TOWN_A)])
    gen = alert_events(outbox, 0, shown_if=StreamFilter(towns=frozenset({TOWN_A})), is_disconnected=never_disconnected,
                       follow=False, audit=audit)
    sent: list[str] = []

    async def read() -> None:
        async for chunk in gen:
            sent.append(chunk)

    with pytest.raises(RuntimeError, match="audit table gone"):
        asyncio.run(read())
    assert named == [{"p1", "p3"}]  # only the persons the caller was to be shown
    assert not any("p1" in chunk or "p3" in chunk for chunk in sent)


def test_the_audit_of_a_stream_runs_before_each_frame() -> None:
    named: list[set[str]] = []

    async def audit(rows: list[dict[str, Any]]) -> None:
        named.append({r["message"]["person_id"] for r in rows})

    outbox = FakeOutbox([row(1), row(2)])
    gen = alert_events(outbox, 0, shown_if=StreamFilter(), is_disconnected=never_disconnected, follow=False,
                       audit=audit)
    text = "".join(asyncio.run(collect(gen, 100)))
    assert named == [{"p1", "p2"}] and "p1" in text and "p2" in text


class RecordingLog:
    def __init__(self, error: Exception | None = None) -> None:
        self.writes: list[list[tuple[int, set[str]]]] = []
        self.error = error

    def add_audit_subjects_of(self, named: Any) -> None:
        self.writes.append([(audit_id, set(persons)) for audit_id, persons in named])
        if self.error is not None:
            raise self.error


def test_streams_with_frames_to_send_in_the_same_turn_share_one_write() -> None:
    """The feed wakes every open stream at once; one transaction per stream and change was one
    SQLite write each, waiting for the worker's commit."""
    log = RecordingLog()

    async def three_streams() -> None:
        writes = SubjectWrites(log)
        await asyncio.gather(*(StreamAudit(writes, {"id": i})([row(1)]) for i in (1, 2, 3)))
        await StreamAudit(writes, {"id": 4})([row(2)])

    asyncio.run(three_streams())
    assert log.writes == [[(1, {"p1"}), (2, {"p1"}), (3, {"p1"})], [(4, {"p2"})]]


def test_a_failed_shared_write_fails_every_stream_in_it_and_names_each_person_once() -> None:
    log = RecordingLog(RuntimeError("audit table gone"))

    async def two_streams() -> list[Any]:
        writes = SubjectWrites(log)
        return await asyncio.gather(*(StreamAudit(writes, {"id": i})([row(1)]) for i in (1, 2)),
                                    return_exceptions=True)

    outcomes = asyncio.run(two_streams())
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError] and len(log.writes) == 1

    log.error = None
    audit = StreamAudit(SubjectWrites(log), {"id": 9})

    async def twice() -> None:
        await audit([row(1), row(2)])
        await audit([row(2), row(3)])

    asyncio.run(twice())
    assert log.writes[1:] == [[(9, {"p1", "p2"})], [(9, {"p3"})]]
