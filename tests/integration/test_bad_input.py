"""Bad input at every door, against the session broker (nothing is killed here):

- ``POST /api/events``: a body over the limit (declared and streamed) -> 413; 10k nested arrays ->
  400 with a reason (no RecursionError); invalid UTF-8 -> 400; a mixed array -> 422 with the
  valid events published all the same;
- ``careledger ingest``: a line over the limit, deep JSON, invalid UTF-8, a BOM, NUL bytes ->
  each rejected with "line N: reason", the valid lines around them published;
- ``careledger import-csv``: an over-long cell, formula cells -> rejected / kept as text;
- ``careledger export --format csv``: cells a spreadsheet would run (``=cmd``, ``+``, ``-``, ``@``)
  are written with a leading ``'``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from processors.domain.rules_config import load_rules
from producers import http_ingest
from producers.csv_import import run_import_csv
from producers.ingest import MAX_LINE_BYTES, run_ingest
from producers.publisher import EventPublisher
from projections import open_store
from projections.api.app import create_app
from projections.export import ExportFilter, export
from tests.support.reliability import dead_letters, record, topic_records
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration


def payment(event_id: str, person: str = "p-bad-input", **changes: Any) -> dict[str, Any]:
    event = {"event_id": event_id, "type": "payment.disbursed", "occurred_at": "2024-03-05T10:12:00+08:00",
             "person_id": person, "town": "城关镇", "village": "东村",
             "payload": {"program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"}}
    event.update(changes)
    return event


class _StubProbe:
    def measure(self) -> Any:
        from processors.lag import LagReport

        return LagReport(per_projection={"sql": 0})


def test_http_oversized_deep_and_invalid_bodies_are_refused_with_reasons(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    store = open_store(settings.sql_url, load_rules(settings.rules_path), topic=settings.topics.events)
    store.migrate()
    with EventPublisher(settings) as publisher:
        app = create_app(settings, store=store, publisher=publisher, lag_probe=_StubProbe())
        with TestClient(app) as client:
            admin = {"Authorization": f"Bearer {app.state.tokens.create('rel-admin', 'admin')}"}
            big = b"[" + b" " * (http_ingest.MAX_BODY_BYTES + 10) + b"]"
            declared = client.post("/api/events", content=big, headers=admin)
            streamed = client.post("/api/events", content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                                   headers=admin)
            deep = client.post("/api/events", content=b"[" * 10_000 + b"]" * 10_000, headers=admin)
            not_utf8 = client.post("/api/events", content=b'{"event_id": "\xff"}', headers=admin)
            mixed = client.post("/api/events", json=[payment("http-ok-1"), {"event_id": "x"},
                                                     payment("http-ok-2", payload={"amount_fen": -1})], headers=admin)
            too_many = client.post("/api/events", json=[{}] * (http_ingest.MAX_EVENTS + 1), headers=admin)
    store.close()
    ids = {json.loads(r.value)["event_id"] for r in topic_records(settings, settings.topics.events)}
    record("bad input", "HTTP POST /api/events: oversized, deep, invalid UTF-8, mixed bodies",
           claim="{oversized} oversized bodies -> 413 (declared and streamed), 10k nested arrays -> {deep_status}, "
                 "invalid UTF-8 -> {utf8_status}, {too_many_events} events -> {too_many_status}, a mixed array -> "
                 "{mixed_status} with its valid event published",
           oversized=2, body_bytes=len(big), deep_status=deep.status_code, utf8_status=not_utf8.status_code,
           mixed_status=mixed.status_code, too_many_events=http_ingest.MAX_EVENTS + 1,
           too_many_status=too_many.status_code, deep_reason=deep.json()["detail"])
    assert declared.status_code == 413 and streamed.status_code == 413, (declared.text, streamed.text)
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["detail"]
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["detail"]
    assert too_many.status_code == 413
    assert mixed.status_code == 422
    rejected = mixed.json()["rejected"]
    assert [r["index"] for r in rejected] == [1, 2] and all(r["reasons"] for r in rejected)
    assert "http-ok-1" in ids and "x" not in ids


def test_ingest_rejects_oversized_deep_and_invalid_lines_with_reasons(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    lines: list[bytes] = [
        b"\xef\xbb\xbf" + json.dumps(payment("ing-1")).encode(),  # BOM on line 1: accepted
        b'{"event_id": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}',  # line 2: too long
        b"[" * 10_000 + b"]" * 10_000,  # line 3: deep
        b'{"event_id": "\xff\xfe"}',  # line 4: invalid UTF-8
        json.dumps(payment("ing-2")).encode(),  # line 5: fine
        b'{"event_id": "nul\x00"}',  # line 6: a raw NUL inside a string is invalid JSON
        json.dumps(payment("ing-3", payload={"program": "living_subsidy", "amount_fen": 10**400,
                                             "period": "2024-03"})).encode(),  # line 7: a huge integer
        json.dumps(payment("ing-4")).encode(),  # line 8: fine
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out, err = io.StringIO(), io.StringIO()
    code = run_ingest(settings, str(path), progress=False, out=out, err=err)
    summary = out.getvalue()
    ids = {json.loads(r.value)["event_id"] for r in topic_records(settings, settings.topics.events)}
    dlq = dead_letters(settings)
    reasons = {n: next((ln for ln in summary.splitlines() if ln.strip().startswith(f"line {n}:")), "")
               for n in (2, 3, 4, 6, 7)}
    record("bad input", "`careledger ingest`: over-long line, deep JSON, invalid UTF-8, BOM, NUL, huge integer",
           claim="{rejected} bad lines rejected with a line number and reason, {accepted} valid neighbours "
                 "published, exit {exit_code}",
           rejected=len(dlq), accepted=len(ids), exit_code=code, line_limit_bytes=MAX_LINE_BYTES,
           reasons={n: r.split(":", 1)[1].strip()[:80] for n, r in reasons.items()})
    assert code == 2, summary + err.getvalue()
    assert ids == {"ing-1", "ing-2", "ing-4"}, (ids, summary)
    assert all(reasons.values()), summary
    assert "line too long" in reasons[2] and "nested too deeply" in reasons[3] and "UTF-8" in reasons[4]
    assert len(dlq) == 5


def test_csv_import_over_long_cell_and_formula_cells(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    header = "事件编号,人员编号,事件类型,发生时间,镇街,村社区,补贴项目,金额(元),所属期"
    rows = [
        "csv-1,p-csv,payment.disbursed,2024-03-05T10:12:00+08:00,城关镇,东村,living_subsidy,500,2024-03",
        "csv-2,p-csv,payment.disbursed,2024-03-05T10:12:00+08:00," + "长" * 70_000 + ",东村,living_subsidy,500,2024-03",
        "csv-3,p-csv,payment.disbursed,2024-03-05T10:12:00+08:00,=cmd|' /C calc'!A0,东村,living_subsidy,500,2024-03",
    ]
    path = tmp_path / "in.csv"
    path.write_text("\ufeff" + header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = run_import_csv(settings, str(path), out=out, err=err, progress=False)
    text = out.getvalue() + err.getvalue()
    assert code in (0, 2), text
    assert "Traceback" not in text
    ids = {json.loads(r.value)["event_id"] for r in topic_records(settings, settings.topics.events)}
    assert "csv-1" in ids and "csv-2" not in ids, text
    record("bad input", "`careledger import-csv`: over-long cell, formula cell, BOM",
           claim="a 70k-character cell rejected with a reason (exit {exit_code}), the valid row and the "
                 "formula-looking row imported as plain text: {published} published",
           exit_code=code, published=len(ids))


def test_export_csv_escapes_formula_cells(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    nasty = {"event_id": "=1+2", "town": "=cmd|' /C calc'!A0", "village": "+SUM(1,2)", "source": "@evil"}
    events = [payment("exp-plain"), payment("exp-nasty", person="-2+3", **{k: v for k, v in nasty.items()
                                                                           if k != "event_id"}),
              payment(nasty["event_id"], person="p-exp", village="-1")]
    with EventPublisher(settings) as publisher:
        from schemas.validation import Accepted, validate_event

        for event in events:
            result = validate_event(event)
            assert isinstance(result, Accepted), result
            publisher.publish(result.event)
    out = tmp_path / "export.csv"
    stats = export(settings, "csv", str(out), ExportFilter())
    with open(out, newline="", encoding="utf-8") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    formula = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    escaped = [c for c in cells if c[:2] in ("'=", "'+", "'-", "'@")]
    record("bad input", "CSV export: formula cells (CSV injection)",
           claim="{rows} rows exported, {escaped} formula-looking cells written with a leading ', "
                 "{unescaped} left runnable",
           rows=stats["rows"], escaped=len(escaped), unescaped=len(formula))
    assert stats["rows"] == 3
    assert formula == [], formula
    assert {"'=1+2", "'=cmd|' /C calc'!A0", "'+SUM(1,2)", "'@evil", "'-2+3", "'-1"} <= set(escaped)
