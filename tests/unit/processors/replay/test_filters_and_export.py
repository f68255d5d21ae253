"""Point-in-time filters, upcasting on replay, CSV escaping, export rows, the follower's guard."""

from __future__ import annotations

import csv
import io
import json

import pytest

from processors.replay.engine import BuildStats, decode_records, split_partitions, until_date, until_time
from processors.replay.reader import LogRecord
from processors.runtime.decoding import RecordDecoder
from projections.export import COLUMNS, ExportFilter, escape_cell, export_row
from projections.replay.ops import parse_until_offset, parse_until_time


def _event(eid: str, at: str, type_: str = "visit.completed", version: int = 1, **payload: object) -> dict:
    body = payload or {"visit_kind": "home_visit", "visitor": "w1", "hazards": []}
    return {"event_id": eid, "type": type_, "version": version, "occurred_at": at, "person_id": "p1",
            "town": "T1", "village": None, "source": "test", "payload": body}


DECODER = RecordDecoder(lambda raw, reasons: None, lambda create: None)


def _rec(offset: int, event: dict, ts: int = 0) -> LogRecord:
    return LogRecord(0, offset, ts, b"p1", json.dumps(event, separators=(",", ":")).encode())


def test_until_date_uses_the_business_date_in_shanghai() -> None:
    keep = until_date("2024-03-31")
    rec = _rec(0, {})
    assert keep(rec, _event("a", "2024-03-31T23:59:00+08:00"))
    assert not keep(rec, _event("b", "2024-04-01T00:00:00+08:00"))
    assert not keep(rec, _event("c", "2024-03-31T16:30:00+00:00"))  # 00:30 on 1 April in Shanghai
    assert keep(rec, _event("d", "2024-03-31T15:59:00Z"))


def test_filtered_and_poison_records_still_advance_positions() -> None:
    records = [
        _rec(0, _event("a", "2024-03-30T10:00:00+08:00")),
        _rec(1, _event("b", "2024-04-02T10:00:00+08:00")),
        LogRecord(0, 2, 0, None, b"{not json"),
    ]
    stats = BuildStats()
    out, _ = decode_records(DECODER, records, until_date("2024-03-31"), stats)
    assert [(c.offset, c.event is not None) for c in out] == [(0, True), (1, False), (2, False)]
    assert (stats.records, stats.filtered) == (3, 1)


def test_an_event_without_a_business_date_is_left_out_of_a_snapshot_not_fatal() -> None:
    # year 9999 at -10:00 is already in year 10000 in Shanghai (issue 15.2)
    keep = until_date("2024-03-31")
    assert not keep(_rec(0, {}), _event("far", "9999-12-31T23:00:00-10:00"))


def test_replay_upcasts_old_versions() -> None:
    out, _ = decode_records(DECODER, [_rec(0, _event("v1", "2024-03-01T10:00:00+08:00", version=1))], None,
                            BuildStats())
    event = out[0].event
    assert event is not None
    assert event["version"] == 2
    assert event["payload"]["duration_minutes"] is None


def test_until_time_filters_on_the_log_timestamp() -> None:
    keep = until_time(1_000)
    assert keep(_rec(0, {}, ts=1_000), {})
    assert not keep(_rec(0, {}, ts=1_001), {})
    assert parse_until_time("2024-03-31T23:59:59+08:00") == parse_until_time("2024-03-31T15:59:59Z")
    assert parse_until_time("2024-03-31") == parse_until_time("2024-03-31T23:59:59.999+08:00")
    with pytest.raises(ValueError):
        parse_until_time("2024-03-31T10:00:00")


def test_until_offset() -> None:
    ends = {0: 10, 1: 5}
    assert parse_until_offset("7", ends) == {0: 8, 1: 5}
    assert parse_until_offset("0:3", ends) == {0: 4, 1: 0}
    with pytest.raises(ValueError):
        parse_until_offset("9:1", ends)
    with pytest.raises(ValueError):
        parse_until_offset("x", ends)


def test_partitions_split_evenly() -> None:
    assert split_partitions(list(range(12)), 4) == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]
    assert split_partitions([0, 1], 4) == [[0], [1]]


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
def test_csv_formula_cells_are_neutralised(cell: str) -> None:
    assert escape_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["abc", "溪口镇", "", "1", "{\"a\":1}", 5, None])
def test_ordinary_cells_are_unchanged(cell: object) -> None:
    assert escape_cell(cell) == cell


def test_export_row_round_trips_through_csv() -> None:
    event = _event("e1", "2024-03-01T10:00:00+08:00", "visit.completed", 2,
                   visit_kind="home_visit", visitor="=cmd|' /C calc'!A0", hazards=[])
    event["village"] = "@village"
    row = export_row(event, "2024-03-01", 3, 42)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([escape_cell(row[c]) for c in COLUMNS])
    parsed = next(csv.reader(io.StringIO(buf.getvalue())))
    values = dict(zip(COLUMNS, parsed, strict=True))
    assert values["village"] == "'@village"
    assert values["person_id"] == "p1"
    assert json.loads(values["payload"])["visitor"].startswith("=cmd")  # inside JSON: starts with {
    assert "id_number" not in values


def test_export_filter() -> None:
    flt = ExportFilter.build(types=["visit.completed"], date_from="2024-03-01", date_to="2024-03-31", towns=["T1"])
    event = _event("e1", "2024-03-05T10:00:00+08:00")
    assert flt.match(event, "2024-03-05")
    assert not flt.match(event, "2024-04-01")
    assert not flt.match({**event, "town": "T2"}, "2024-03-05")
    assert not flt.match({**event, "type": "payment.disbursed"}, "2024-03-05")
    with pytest.raises(ValueError, match="unknown event type"):
        ExportFilter.build(types=["nope"])
    with pytest.raises(ValueError, match="after"):
        ExportFilter.build(date_from="2024-04-01", date_to="2024-03-01")
