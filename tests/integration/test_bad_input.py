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
from producers.ingest import run_ingest
from producers.line_check import MAX_LINE_BYTES
from producers.publisher import EventPublisher
from projections import open_store
from projections.api.app import create_app
from projections.export import ExportFilter, export
from tests.support.reliability import dead_letters, record, topic_records
from tests.support.servers import TestStack

pytestmark = pytest.mark.integration


def payment(event_id: str, person: str = "p-bad-input", **changes: Any) -> dict[str, Any]:
    event = {"event_id": event_id, "type": "payment.disbursed", "occurred_at": "2024-03-05T10:12:00+08:00",
             "person_id": person, "town": "锦屏街道", "village": "东村",
             "payload": {"program": "living_subsidy", "amount_fen": 50000, "period": "2024-03"}}
    event.update(changes)
    return event


class _StubProbe:
    def close(self) -> None:
        pass

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
        "csv-1,p-csv,payment.disbursed,2024-03-05T10:12:00+08:00,锦屏街道,东村,living_subsidy,500,2024-03",
        "csv-2,p-csv,payment.disbursed,2024-03-05T10:12:00+08:00," + "长" * 70_000 + ",东村,living_subsidy,500,2024-03",
        "csv-3,p-csv,payment.disbursed,2024-03-05T10:12:00+08:00,锦屏街道,=cmd|' /C calc'!A0,living_subsidy,500,2024-03",
    ]
    path = tmp_path / "in.csv"
    path.write_text("\ufeff" + header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = run_import_csv(settings, str(path), out=out, err=err, progress=False)
    text = out.getvalue() + err.getvalue()
    assert code in (0, 2), text
    assert "Traceback" not in text
    ids = {json.loads(r.value)["event_id"] for r in topic_records(settings, settings.topics.events)}
    assert "csv-1" in ids and "csv-2" not in ids and "csv-3" in ids, text
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


# ---- issue 15: lone surrogates, ID numbers however written, towns and invisible text, time window ----------
def _post(settings: Any, body: bytes | list[Any]) -> Any:
    store = open_store(settings.sql_url, load_rules(settings.rules_path), topic=settings.topics.events)
    store.migrate()
    try:
        with EventPublisher(settings) as publisher:
            app = create_app(settings, store=store, publisher=publisher, lag_probe=_StubProbe())
            with TestClient(app) as client:
                admin = {"Authorization": f"Bearer {app.state.tokens.create('rel-admin', 'admin')}",
                         "Content-Type": "application/json"}
                content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
                return client.post("/api/events", content=content, headers=admin)
    finally:
        store.close()


def _ingest(settings: Any, path: Path, lines: list[str | bytes]) -> tuple[int, str]:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    out, err = io.StringIO(), io.StringIO()
    code = run_ingest(settings, str(path), progress=False, out=out, err=err)
    (out.getvalue() + err.getvalue()).encode("utf-8")  # what a terminal must be able to print
    return code, out.getvalue() + err.getvalue()


def _rejected(summary: str) -> int:
    return int(summary.split("rejected: ", 1)[1].split()[0])


def _import_csv(settings: Any, path: Path, text: str) -> tuple[int, str]:
    path.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = run_import_csv(settings, str(path), progress=False, out=out, err=err)
    (out.getvalue() + err.getvalue()).encode("utf-8")
    return code, out.getvalue() + err.getvalue()


CSV_HEADER = "事件编号,人员编号,发生时间,镇街,村社区,补贴项目,金额(元),所属期\n"


def test_lone_surrogate_escapes_are_one_rejected_record_at_every_door(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    good = json.dumps(payment("sur-1"), ensure_ascii=False)
    code, summary = _ingest(settings, tmp_path / "sur.jsonl", [
        good,
        good.replace('"sur-1"', '"sur-2"').replace('"锦屏街道"', '"\\ud800"'),
        good.replace('"sur-1"', '"sur-3"').replace('"payload": {', '"payload": {"x\\udfff": 1, '),
        good.replace('"sur-1"', '"\\udc00"'),
        good.replace('"sur-1"', '"sur-4"'),
    ])
    texts = [json.dumps(payment(f"sur-h{i}"), ensure_ascii=False) for i in range(3)]
    texts[1] = texts[1].replace('"东村"', '"\\ud800"')
    http = _post(settings, ("[" + ",".join(texts) + "]").encode())
    csv_bytes = ("\ufeff" + CSV_HEADER).encode() + "sur-c1,p-s,2024-03-05,锦屏街道,东村,生活补贴,500,2024-03\n".encode() \
        + b"sur-c2,p-s,2024-03-05,\xe9\x94\xa6\xff,\xff\xfe,\xe7\x94\x9f\xe6\xb4\xbb\xe8\xa1\xa5\xe8\xb4\xb4,500,2024-03\n"
    (tmp_path / "sur.csv").write_bytes(csv_bytes)
    out, err = io.StringIO(), io.StringIO()
    csv_code = run_import_csv(settings, str(tmp_path / "sur.csv"), progress=False, out=out, err=err,
                              encoding="utf-8")
    csv_text = out.getvalue() + err.getvalue()
    csv_text.encode("utf-8")
    ids = sorted(json.loads(r.value)["event_id"] for r in topic_records(settings, settings.topics.events))
    dlq = dead_letters(settings)
    record("bad input", "Lone surrogate escapes (\\ud800) and undecodable bytes at ingest, HTTP and import-csv",
           claim="ingest: {ingest_rejected} surrogate lines rejected with their field, exit {ingest_exit}; HTTP: "
                 "{http_status} with {http_accepted} of 3 published; import-csv: the undecodable row rejected "
                 "(exit {csv_exit}); {published} valid events published, {dead_letters} dead letters, 0 crashes",
           ingest_rejected=_rejected(summary), ingest_exit=code, http_status=http.status_code,
           http_accepted=http.json()["accepted"],
           csv_exit=csv_code, published=len(ids), dead_letters=len(dlq))
    assert code == 2 and _rejected(summary) == 3 and "line 2: town: contains a lone UTF-16 surrogate escape" in summary
    assert "line 4: event_id: contains a lone UTF-16 surrogate escape (\\udc00)" in summary
    assert http.status_code == 422 and http.json()["accepted"] == 2, http.text
    assert csv_code == 2 and "Traceback" not in csv_text and "line 3:" in csv_text, csv_text
    assert ids == ["sur-1", "sur-4", "sur-c1", "sur-h0", "sur-h2"]
    assert len(dlq) == 5 and {"\\ud800"} <= {d["record"].get("town") for d in dlq if isinstance(d["record"], dict)}


def _nfkc_digits(text: str) -> str:
    import re
    import unicodedata

    return re.sub(r"[\s\-\u200b\u2014]", "", unicodedata.normalize("NFKC", text))


ID = "110101199003071233"
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ID_WRITINGS = [f"{ID[:6]} {ID[6:14]} {ID[14:]}", f"{ID[:6]}-{ID[6:14]}-{ID[14:]}", ID.translate(FULL_WIDTH),
               f"{ID[:4]} {ID[4:8]} {ID[8:12]} {ID[12:16]} {ID[16:]}", f"{ID[:6]}\u200b{ID[6:]}",
               f"{ID[:6]}\u3000{ID[6:14]}\u3000{ID[14:]}".translate(FULL_WIDTH)]


def test_id_numbers_in_any_writing_never_reach_kafka_or_a_report(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    lines = []
    for i, written in enumerate(ID_WRITINGS):
        lines.append(json.dumps(payment(f"idw-v{i}", village=f"东村{written}"), ensure_ascii=False))
        lines.append(json.dumps(payment(f"idw-p{i}", person=written), ensure_ascii=False))
    lines.append(json.dumps(payment("idw-ok"), ensure_ascii=False))
    code, summary = _ingest(settings, tmp_path / "ids.jsonl", lines)
    http = _post(settings, [payment(f"idw-h{i}", source=f"终端 {w}") for i, w in enumerate(ID_WRITINGS)]
                 + [payment("idw-h-ok")])
    rows = "".join(f"idw-c{i},p-c,2024-03-05,锦屏街道,东村{w},生活补贴,500,2024-03\n"
                   for i, w in enumerate(ID_WRITINGS))
    csv_code, csv_text = _import_csv(settings, tmp_path / "ids.csv",
                                     CSV_HEADER + rows + "idw-c-ok,p-c,2024-03-05,锦屏街道,东村,生活补贴,500,2024-03\n")
    published = topic_records(settings, settings.topics.events)
    dlq = topic_records(settings, settings.topics.dlq)
    reports = "".join(p.read_text(encoding="utf-8") for p in settings.reports_dir.glob("*.jsonl"))
    everything = b"".join((r.key or b"") + r.value for r in published + dlq).decode("utf-8") + reports \
        + summary + http.text + csv_text
    in_clear = _nfkc_digits(everything).count(ID)
    ids = sorted(json.loads(r.value)["event_id"] for r in published)
    variants = len(ID_WRITINGS) * 4
    record("bad input", "ID numbers written in groups, with dashes, full-width or with invisible characters",
           claim="{variants} records carrying an ID number written {writings} ways (ingest, HTTP, import-csv) all "
                 "rejected; {published} valid neighbours published; the ID number found {in_clear} times in "
                 "the events topic, dead letters, reports and answers (digits normalised)",
           variants=variants, writings=len(ID_WRITINGS), rejected=len(dlq), published=len(ids), in_clear=in_clear)
    assert code == 2 and f"rejected: {2 * len(ID_WRITINGS)}" in summary, summary
    assert http.status_code == 422 and len(http.json()["rejected"]) == len(ID_WRITINGS), http.text
    assert csv_code == 2 and f"rejected: {len(ID_WRITINGS)}" in csv_text, csv_text
    assert ids == ["idw-c-ok", "idw-h-ok", "idw-ok"]
    assert len(dlq) == variants and in_clear == 0


def test_towns_are_master_data_invisible_characters_and_nul_are_refused(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    code, summary = _ingest(settings, tmp_path / "towns.jsonl", [json.dumps(e, ensure_ascii=False) for e in [
        payment("tw-1", town="锦屏街"),  # the look-alike that became a 13th town
        payment("tw-2", town="錦屏街道"),  # traditional characters
        payment("tw-3", town="锦屏街道\u200b", village="东村\u00a0１组"),  # accepted, normalised
        payment("tw-4", village="东\u0000村"),
        payment("tw-5\u200b"),
        payment("tw-6", town="\ufeff岳林街道"),  # accepted as 岳林街道
    ]])
    http = _post(settings, [payment("tw-h1", town="城关镇"), payment("tw-h2", town="西坞街道")])
    csv_code, csv_text = _import_csv(settings, tmp_path / "towns.csv", CSV_HEADER
                                     + "tw-c1,p-t,2024-03-05,松岙,东村,生活补贴,500,2024-03\n"
                                     + "tw-c2,p-t,2024-03-05,松岙镇,东村,生活补贴,500,2024-03\n")
    events = [json.loads(r.value) for r in topic_records(settings, settings.topics.events)]
    towns = sorted({e["town"] for e in events})
    record("bad input", "Look-alike and unknown towns, invisible characters, NUL in strings",
           claim="{refused} records refused at ingest, HTTP and import-csv (look-alike, traditional-character and "
                 "unknown towns, with the list of the {configured} towns; a NUL; a zero-width space in an id); "
                 "{normalised} with invisible characters "
                 "stored as the configured town; towns on the topic: {towns_on_topic} (none outside the configuration)",
           refused=len(dead_letters(settings)), configured=len(settings.towns),
           normalised=sum(e["event_id"] in ("tw-3", "tw-6") for e in events), towns_on_topic=towns)
    assert code == 2 and "accepted: 2" in summary and "rejected: 4" in summary, summary
    assert "line 1: town: must be one of the district's 12 towns (did you mean 锦屏街道?)" in summary
    assert "line 4: village: contains a control character (U+0000)" in summary
    assert "line 5: event_id: contains an invisible character (U+200B)" in summary
    assert http.status_code == 422 and "town: must be one of" in http.json()["rejected"][0]["reasons"][0]
    assert csv_code == 2 and 'line 2: column "镇街" (town): must be one of' in csv_text, csv_text
    assert set(towns) <= set(settings.towns) and towns == ["岳林街道", "松岙镇", "西坞街道", "锦屏街道"]
    assert {e["event_id"]: e["village"] for e in events}["tw-3"] == "东村 1组"


def test_occurred_at_outside_the_window_is_refused_at_ingest(stack: TestStack, tmp_path: Path) -> None:
    settings = stack.fresh_settings()
    code, summary = _ingest(settings, tmp_path / "window.jsonl", [json.dumps(e, ensure_ascii=False) for e in [
        payment("win-1", occurred_at="9999-12-31T23:00:00-10:00"),
        payment("win-2", occurred_at="0001-01-01T00:00:00+14:00"),
        payment("win-3", occurred_at="2008-03-01T09:00:00+08:00"),
    ]])
    http = _post(settings, [payment("win-h1", occurred_at="9999-12-31T23:00:00-10:00"), payment("win-h2")])
    ids = sorted(json.loads(r.value)["event_id"] for r in topic_records(settings, settings.topics.events))
    record("bad input", "occurred_at far outside a plausible window (year 9999 at -10:00, year 0001 at +14:00)",
           claim="ingest: {ingest_rejected} refused before Kafka (exit {exit_code}), HTTP: {http_status}; "
                 "accepted: {accepted} (history from 2008 passes); window {window}",
           ingest_rejected=_rejected(summary), exit_code=code, http_status=http.status_code, accepted=ids,
           window=f"{settings.occurred_at_earliest} .. now + {settings.occurred_at_ahead_days:g} days")
    assert code == 2 and _rejected(summary) == 2 and "line 1: occurred_at: must be between 1949-10-01" in summary
    assert "line 2: occurred_at: must be between" in summary
    assert http.status_code == 422
    assert ids == ["win-3", "win-h2"]
