"""The trace context of an event reaches the outbox rows it causes (decoder → fold → SQL writer),
through the runtime a worker runs: alert changes and warning notices carry a child span of the
event's ``traceparent`` header; a malformed or missing header starts a new trace, never an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from processors.runtime.records import RawRecord
from tests.support.runtime import runtime_for
from tests.unit.projections.sql.test_notices import Clock, ev, home_visit, registered, store

INGESTED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def profile(eid: str, day: str) -> dict[str, Any]:
    return ev(eid, "person.profile_changed", {"phone": "13800001234"}, day)


def raw(offset: int, event: dict[str, Any], traceparent: str | bytes | None = None) -> RawRecord:
    value = json.dumps(event, ensure_ascii=False).encode()
    headers = [] if traceparent is None else [("traceparent", traceparent if isinstance(traceparent, bytes)
                                                else traceparent.encode())]
    return RawRecord(0, offset, event["person_id"].encode(), value, headers)


def parts(traceparent: str | None) -> tuple[str, str]:
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, flags, len(trace_id), len(span_id)) == ("00", "01", 32, 16), traceparent
    return trace_id, span_id


def test_alert_changes_and_warning_notices_continue_the_trace_of_their_event(tmp_path: Path) -> None:
    s = store(tmp_path, Clock("2024-06-30T02:00:00+00:00"))
    runtime = runtime_for(s)
    runtime.apply([raw(0, registered("2024-03-22"), OTHER),
                   raw(1, home_visit("v-1", "2024-06-29", hazards=["abuse_or_neglect", "unsafe_housing"]), INGESTED)])
    alerts = [r for r in s.outbox_pending(100) if r["channel"] == "alert"]
    assert len(alerts) == 2
    assert {parts(r["traceparent"])[0] for r in alerts} == {INGESTED.split("-")[1]}
    # one "apply event" span for the event, a child of the ingest span (its own span id)
    assert len({r["traceparent"] for r in alerts}) == 1 and parts(alerts[0]["traceparent"])[1] != INGESTED.split("-")[2]

    (tmp_path / "w").mkdir()
    s2 = store(tmp_path / "w", Clock("2024-06-30T02:00:00+00:00"))
    runtime = runtime_for(s2)
    runtime.apply([raw(0, registered("2024-03-22"))])  # an old event: no warning published by it
    runtime.apply([raw(1, profile("p-1", "2024-06-29"), INGESTED)])  # makes visit_overdue due now
    [notice] = s2.outbox_pending(100)
    assert notice["channel"] == "warning" and notice["alert"]["kind"] == "warning.due"
    assert parts(notice["traceparent"])[0] == INGESTED.split("-")[1]


def test_a_malformed_or_missing_header_starts_a_new_trace_and_the_event_is_applied(tmp_path: Path) -> None:
    s = store(tmp_path, Clock("2024-06-30T02:00:00+00:00"))
    dead: list[str] = []
    runtime = runtime_for(s, dead_letter=lambda raw, reasons: dead.extend(reasons))
    runtime.apply([raw(0, registered("2024-03-22", person="p1")),
                   raw(1, registered("2024-03-22", person="p2")),
                   raw(2, home_visit("v-1", "2024-06-29", person="p1", hazards=["unsafe_housing"]), b"\xff\x00junk"),
                   raw(3, home_visit("v-2", "2024-06-29", person="p2", hazards=["unsafe_housing"]))])
    assert dead == []
    traces = [parts(r["traceparent"])[0] for r in s.outbox_pending(100)]
    assert len(traces) == 2 and len(set(traces)) == 2
