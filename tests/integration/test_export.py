"""``careledger export`` from the log: CSV (escaped), Parquet, ClickHouse; filters; pseudonymous."""

from __future__ import annotations

import csv

import pyarrow.parquet as pq

from processors.domain.calendar import event_date
from producers.simulate.generator import SimConfig, generate
from projections.clickhouse.store import ClickHouseStore
from projections.export import ExportFilter, export
from tests.support.pipeline import publish
from tests.support.servers import TestStack


def test_export_to_csv_parquet_and_clickhouse(stack: TestStack) -> None:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(persons=400, seed=3)))
    events[0] = {**events[0], "village": "=HYPERLINK(\"http://evil\")"}
    publish(settings, events)
    flt = ExportFilter.build(types=["payment.disbursed", "visit.completed"], date_from="2024-01-01",
                             date_to="2024-06-30")
    wanted = {e["event_id"] for e in events if e["type"] in flt.types
              and "2024-01-01" <= event_date(e["occurred_at"]) <= "2024-06-30"}

    out_csv = settings.home / "out" / "events.csv"
    result = export(settings, "csv", str(out_csv), flt)
    assert result["rows"] == len(wanted) and result["read"] == len(events)
    with open(out_csv, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["event_id"] for r in rows} == wanted
    assert {r["version"] for r in rows if r["type"] == "visit.completed"} == {"2"}  # upcast
    assert "id_number" not in rows[0]

    everything = settings.home / "out" / "all.csv"
    export(settings, "csv", str(everything))
    text = everything.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text

    out_parquet = settings.home / "out" / "events.parquet"
    assert export(settings, "parquet", str(out_parquet), flt)["rows"] == len(wanted)
    table = pq.read_table(out_parquet)
    assert set(table.column("event_id").to_pylist()) == wanted

    url = stack.fresh_clickhouse_url()
    assert export(settings, "clickhouse", url, flt)["rows"] == len(wanted)
    store = ClickHouseStore(url, projection="export", topic=settings.topics.events)
    assert store.event_count() == len(wanted)
    assert export(settings, "clickhouse", url, flt)["rows"] == 0  # resumed: nothing new
    store.close()
