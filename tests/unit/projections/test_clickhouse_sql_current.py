"""The ClickHouse store's DDL, inserts and count queries on a CURRENT ClickHouse release.

The integration tests run them on the Debian server (18.16); this runs the very same statements
in-process on chDB (``chdb-core``, ClickHouse 26.x, a test dependency), so the SQL is proven on
both ends of the supported range.  (It was skipped when chDB was absent, and CI never had it.)
"""

from __future__ import annotations

import json
from typing import Any

import chdb.session as chdb_session
from clickhouse_driver.util import escape

from processors.domain.model import Consumed
from projections.clickhouse.store import ClickHouseStore
from tests.unit.projections.gen import Gen, batches, check_counts, to_records


class ChdbExecutor:
    """Stands in for ``ClickHouseStore._execute``: same queries and parameters, run by chDB."""

    def __init__(self, database: str) -> None:
        self.session = chdb_session.Session()
        self.session.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        self.session.query(f"USE {database}")
        self.session.query("SET output_format_json_quote_64bit_integers = 0")

    def __call__(self, query: str, params: Any = None, columnar: bool = False, **_: Any) -> Any:
        if query.lstrip().upper().startswith("INSERT") and params is not None:
            rows = list(zip(*params, strict=True)) if columnar else list(params)
            values = ", ".join(
                "(" + ", ".join(str(escape.escape_param(v, None)) for v in row) + ")" for row in rows
            )
            self.session.query(f"{query} {values}")
            return None
        if params:
            query = query % escape.escape_params(params, None)
        if query.lstrip().upper().startswith(("INSERT", "CREATE", "DROP", "OPTIMIZE")):
            self.session.query(query)
            return []
        text = self.session.query(query, "JSONCompact").bytes().decode()
        if not text.strip():
            return []
        return [tuple(row) for row in json.loads(text)["data"]]

    def version(self) -> str:
        return self.__call__("SELECT version()")[0][0]


def test_same_sql_runs_on_current_clickhouse():
    executor = ChdbExecutor("careledger_current")
    assert int(executor.version().split(".")[0]) >= 23
    store = ClickHouseStore("clickhouse://127.0.0.1:9/careledger_current")
    store._execute = executor  # type: ignore[method-assign]
    store.migrate()
    store.migrate()
    events = Gen(seed=5, persons=50).stream(500)
    recs = to_records(events)
    for b in batches(recs, 80):
        store.apply_batch(b)
        store.apply_batch(b)  # redelivery: skipped by offsets
    # a crash between the events insert and the offsets insert: the same rows inserted again
    executor(
        "INSERT INTO events SELECT * FROM events WHERE kafka_partition = 0"
    )
    store.apply_batch([Consumed(r.partition, r.offset + 5_000, r.event) for r in recs[:30]] + [Consumed(1, 9_000, None)])
    assert store.offsets()[1] == 9_000
    assert check_counts(store, events) > 300
    rows = store.grouped_counts("payment", ["key", "town", "month", "date"])
    assert sum(r["events"] for r in rows) == store.counts("payment")["events"]
    assert store.event_count() == len({e["event_id"] for e in events})
