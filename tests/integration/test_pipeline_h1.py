"""The calibrated half-year, end to end: simulator → Kafka → faust workers → every store.

CONTRACT.md §2 counts, asked of SQLite, PostgreSQL and ClickHouse after the workers caught up,
equal the federation's published 2024H1 figures (shared/domain/h1-report.csv) exactly.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from processors.domain.counts import reference_counts
from producers.simulate.generator import SimConfig, generate
from projections.store import ProjectionStore
from tests.support.pipeline import open_test_store, publish, wait_caught_up, worker
from tests.support.servers import TestStack

H1_FROM, H1_TO = date(2024, 1, 1), date(2024, 6, 30)
REPORT = Path(__file__).resolve().parents[2] / "producers" / "simulate" / "h1-report.csv"
SHARED_REPORT = Path(__file__).resolve().parents[3] / "shared" / "domain" / "h1-report.csv"


def report_rows() -> list[dict[str, str]]:
    path = SHARED_REPORT if SHARED_REPORT.exists() else REPORT
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def expected(row: dict[str, str]) -> dict[str, int]:
    wanted: dict[str, int] = {}
    if row["persons"]:
        wanted["persons"] = int(row["persons"])
    if row["events"]:
        wanted["events"] = int(row["events"])
    if row["amount_yuan"]:
        wanted["amount_fen"] = int(Decimal(row["amount_yuan"]) * 100)
    positions = re.search(r"(\d+) positions", row["note"])
    if positions:
        wanted["positions"] = int(positions.group(1))
    return wanted


@pytest.fixture(scope="module")
def h1(stack: TestStack) -> Iterator[dict[str, Any]]:
    settings = stack.fresh_settings()
    events = list(generate(SimConfig(calibrate="2024H1", seed=2024)))
    publish(settings, events)
    urls = {
        "sqlite": f"sqlite:///{settings.home / 'h1.sqlite3'}",
        "postgresql": stack.fresh_pg_url(),
        "clickhouse": stack.fresh_clickhouse_url(),
    }
    workers = [
        worker(settings, "sql", urls["sqlite"], "sqlite").start(),
        worker(settings, "sql", urls["postgresql"], "postgresql").start(),
        worker(settings, "clickhouse", urls["clickhouse"], "clickhouse").start(),
    ]
    stores: dict[str, ProjectionStore] = {name: open_test_store(settings, url) for name, url in urls.items()}
    try:
        wait_caught_up(settings, stores, expected_end=len(events), timeout=900, workers=workers)
    finally:
        for w in workers:
            w.stop()
    yield {"settings": settings, "events": events, "stores": stores}
    for store in stores.values():
        store.close()


@pytest.mark.parametrize("store_name", ["sqlite", "postgresql", "clickhouse"])
@pytest.mark.parametrize("row", report_rows(), ids=lambda r: r["metric"])
def test_half_year_counts_equal_the_published_report(h1: dict[str, Any], store_name: str,
                                                     row: dict[str, str]) -> None:
    store = h1["stores"][store_name]
    answer = store.counts(row["kind"], row["key"] or None, H1_FROM, H1_TO)
    wanted = expected(row)
    assert {k: answer[k] for k in wanted} == wanted


@pytest.mark.parametrize("store_name", ["sqlite", "postgresql", "clickhouse"])
def test_counts_by_town_and_month_agree_with_the_event_oracle(h1: dict[str, Any], store_name: str) -> None:
    store = h1["stores"][store_name]
    events = h1["events"]
    for kind, key, town, date_from, date_to in [
        ("payment", "nursing_subsidy", "溪口镇", date(2024, 3, 1), date(2024, 3, 31)),
        ("payment", None, "锦屏街道", None, None),
        ("visit", "home_visit", "莼湖镇", H1_FROM, H1_TO),
        ("person", None, None, None, None),
        ("posting", None, None, None, None),
        ("need", None, "岳林街道", None, date(2024, 6, 30)),
    ]:
        oracle = reference_counts(events, kind, key, date_from, date_to, town)
        assert store.counts(kind, key, date_from, date_to, town) == oracle, (kind, key, town)


def test_sqlite_and_postgresql_hold_the_same_rows(h1: dict[str, Any]) -> None:
    sqlite_rows = h1["stores"]["sqlite"].snapshot_rows()
    pg_rows = h1["stores"]["postgresql"].snapshot_rows()
    assert sqlite_rows.keys() == pg_rows.keys()
    for table in sqlite_rows:
        assert sqlite_rows[table] == pg_rows[table], table
