"""``careledger export`` from the log: typed Parquet (read back with DuckDB), CSV (escaped),
ClickHouse; filters; sensitive fields left out unless an admin asks; private files; a record that
cannot be exported is skipped and reported, never the end of the export."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import stat
from contextlib import redirect_stdout
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from careledger.cli import main
from producers.simulate.generator import SimConfig, generate
from projections.api.auth import TokenStore
from projections.clickhouse.store import ClickHouseStore
from projections.export import ExportFilter, export
from schemas.validation import event_date
from tests.support.pipeline import publish
from tests.support.reliability import record
from tests.support.servers import TestStack

REPO_ROOT = Path(__file__).resolve().parents[2]


def query(sql: str, *params: object) -> list[tuple]:
    return duckdb.execute(sql, list(params)).fetchall()


def column_types(path: str) -> dict[str, str]:
    """DuckDB's view of a Parquet file's columns: name -> type."""
    return {name: kind for name, kind, *_ in query("DESCRIBE SELECT * FROM read_parquet(?)", path)}


def test_export_to_csv_parquet_and_clickhouse(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(persons=400, seed=3)))
    events[0] = {**events[0], "village": "=HYPERLINK(\"http://evil\")"}
    publish(settings, events)
    flt = ExportFilter.build(types=["payment.disbursed", "visit.completed"], date_from="2024-01-01",
                             date_to="2024-06-30")
    wanted = {e["event_id"] for e in events if e["type"] in flt.types
              and "2024-01-01" <= event_date(e) <= "2024-06-30"}

    out_csv = settings.home / "out" / "events.csv"
    result = export(settings, "csv", str(out_csv), flt)
    assert result["rows"] == len(wanted) and result["read"] == len(events) and result["skipped"] == 0
    with open(out_csv, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["event_id"] for r in rows} == wanted
    assert {r["version"] for r in rows if r["type"] == "visit.completed"} == {"2"}  # upcast
    assert "id_number" not in rows[0]
    assert not any("hazards" in json.loads(r["payload"]) for r in rows)  # sensitive: left out

    everything = settings.home / "out" / "all.csv"
    export(settings, "csv", str(everything))
    text = everything.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text

    out_parquet = settings.home / "out" / "parquet"
    result = export(settings, "parquet", str(out_parquet), flt)
    assert result["rows"] == len(wanted) and set(result["by_type"]) == {"payment.disbursed", "visit.completed"}
    ids = {r[0] for r in query("SELECT event_id FROM read_parquet(?, union_by_name = true)",
                               f"{out_parquet}/*.parquet")}
    assert ids == wanted

    url = stack.fresh_clickhouse_url()
    assert export(settings, "clickhouse", url, flt)["rows"] == len(wanted)
    store = ClickHouseStore(url, projection="export", topic=settings.topics.events)
    assert store.event_count() == len(wanted)
    assert export(settings, "clickhouse", url, flt)["rows"] == 0  # resumed: nothing new
    store.close()


def test_parquet_has_typed_columns_per_event_type(stack: TestStack) -> None:
    """Issue 16.3: dates were strings, the payload a JSON string, sensitive fields in clear."""
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(persons=300, seed=5)))
    publish(settings, events)
    out = settings.home / "typed"
    result = export(settings, "parquet", str(out))
    payments = f"{out}/payment.disbursed.parquet"
    types = column_types(payments)
    registered = column_types(f"{out}/person.registered.parquet")
    visits = column_types(f"{out}/visit.completed.parquet")
    assert types["date"] == "DATE" and types["occurred_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["amount_fen"] == "BIGINT" and types["program"] == "VARCHAR" and types["period"] == "VARCHAR"
    assert "payload" not in types
    assert registered["certificate_expires"] == "DATE"
    assert not {"birth_date", "category", "grade", "hardship"} & set(registered)
    assert "hazards" not in visits and visits["duration_minutes"] == "SMALLINT"

    by_program = query("SELECT program, sum(amount_fen)::BIGINT FROM read_parquet(?) GROUP BY ALL", payments)
    expected: dict[str, int] = {}
    for e in events:
        if e["type"] == "payment.disbursed":
            expected[e["payload"]["program"]] = expected.get(e["payload"]["program"], 0) + e["payload"]["amount_fen"]
    assert dict(by_program) == expected
    first = next(e for e in events if e["type"] == "payment.disbursed")
    [(day, moment)] = query("SELECT date, occurred_at FROM read_parquet(?) WHERE event_id = ?", payments,
                            first["event_id"])
    assert day.isoformat() == event_date(first)
    assert moment.timestamp() == datetime.fromisoformat(first["occurred_at"]).timestamp()

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["rows"] == result["by_type"] and manifest["sensitive_fields"] == "left out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o600}


def test_sensitive_fields_need_an_admin_token_and_are_audited(stack: TestStack, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(persons=60, seed=7)))
    publish(settings, events)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    tokens = TokenStore.from_settings(settings)
    (settings.home / "admin.token").write_text(tokens.create("exporter", "admin"))
    (settings.home / "viewer.token").write_text(tokens.create("looker", "viewer"))
    base = ["export", "--format", "parquet", "--no-progress", "--type", "person.registered"]
    assert main([*base, "--out", str(settings.home / "v"), "--include-sensitive", "--token-file",
                 str(settings.home / "viewer.token")]) == 2
    assert "not an active admin token" in capsys.readouterr().err
    assert not (settings.home / "v").exists()
    assert main([*base, "--out", str(settings.home / "a"), "--include-sensitive", "--token-file",
                 str(settings.home / "admin.token")]) == 0
    assert "sensitive fields included (admin token 'exporter'; audited)" in capsys.readouterr().out
    columns = set(column_types(f"{settings.home}/a/person.registered.parquet"))
    assert {"birth_date", "category", "grade", "hardship"} <= columns
    audit = tokens.audit_rows()["items"]
    assert [(r["token_name"], r["status"], r["path"]) for r in audit[:2]] == [
        ("exporter", 200, "careledger export"), ("looker", 403, "careledger export")]
    assert audit[0]["query"] == "format=parquet&include_sensitive=1&type=person.registered"
    # every person whose sensitive fields the export holds is audited under that person
    registered = {e["person_id"] for e in events if e["type"] == "person.registered"}
    assert audit[0]["persons_listed"] == len(registered) > 0
    for person in sorted(registered)[:5]:
        assert [r["path"] for r in tokens.audit_rows(person_id=person)["items"]] == ["careledger export"]
    tokens.close()


def test_a_record_that_cannot_be_exported_is_skipped_and_reported(stack: TestStack) -> None:
    """Issue 15.2: an occurred_at of year 9999 at -10:00 already on the log made every export fail
    with OverflowError."""
    settings = stack.fresh_settings()
    good = [{"event_id": f"ok-{i}", "type": "job.posted", "version": 1, "occurred_at": "2024-03-05T10:12:00+08:00",
             "person_id": None, "town": "锦屏街道", "village": None, "source": None,
             "payload": {"employer": "某公司", "positions": 1}} for i in range(3)]
    far = [{**good[0], "event_id": "far-future", "occurred_at": "9999-12-31T23:00:00-10:00"},
           {**good[0], "event_id": "far-past", "occurred_at": "0001-01-01T00:00:00+14:00"}]
    publish(settings, [good[0], far[0], good[1], far[1], good[2]])
    results = {fmt: export(settings, fmt, str(settings.home / f"out.{fmt}")) for fmt in ("csv", "parquet")}
    out = io.StringIO()
    with redirect_stdout(out):
        os.environ.update(settings.to_env())
        try:
            code = main(["export", "--format", "csv", "--out", str(settings.home / "cli.csv"), "--no-progress"])
        finally:
            for name in settings.to_env():
                os.environ.pop(name, None)
    record("bad input", "Export of a log holding timestamps that overflow in UTC (year 9999 at -10:00, 0001 at +14:00)",
           claim="CSV and Parquet exports finish with {rows} rows and {skipped} records skipped and reported "
                 "(before: OverflowError on every run)",
           rows=results["parquet"]["rows"], skipped=results["parquet"]["skipped"],
           reasons=sorted({s["reason"].split(":")[0] for s in results["parquet"]["skipped_records"]}))
    for result in results.values():
        assert result["rows"] == 3 and result["skipped"] == 2
        assert sorted(s["event_id"] for s in result["skipped_records"]) == ["far-future", "far-past"]
    manifest = json.loads((settings.home / "out.parquet" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["skipped"] == 2
    assert code == 0 and "2 not exportable skipped" in out.getvalue()


def test_the_docs_examples_run_against_a_real_export(stack: TestStack, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/export.md: its first command and every Python block, executed as written."""
    settings = stack.fresh_settings()
    publish(settings, list(generate(SimConfig(persons=200, seed=11))))
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    doc = (REPO_ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    command = re.search(r"```sh\n(careledger export .*?)\n```", doc).group(1)  # type: ignore[union-attr]
    assert main([*shlex.split(command)[1:], "--no-progress"]) == 0
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "docs/export.md", "exec"), {})  # noqa: S102 - our own documentation
