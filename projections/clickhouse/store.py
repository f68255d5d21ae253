"""The ClickHouse projection: full event history + counts computed from it.

Effectively-once without transactions:

The projection runtime (``processors.runtime``) drives it with the event-history policy
(``processors.domain.history``); per batch:

1. read the stored offsets (``consumer_offsets``, ReplacingMergeTree(offset)); the runtime skips
   records at or below them;
2. insert the batch's new events in ONE columnar insert into ``events``
   (ReplacingMergeTree(ingest_version) ORDER BY (type, event_id));
3. insert the new offsets.

A crash between 2 and 3 re-delivers the batch, which re-inserts rows identical to the ones
already there; a producer re-send inserts the same ``event_id`` again.  Merges collapse such
copies eventually, and until then every query de-duplicates by ``event_id`` itself
(``GROUP BY event_id`` before aggregating), so a copy never counts twice.

``ingest_version`` is ``2**63 - 1 - kafka_offset``: the replacing engine keeps the highest
version, i.e. the FIRST copy of an ``event_id`` - the same copy the SQL store and
``reference_counts`` keep.

All SQL is in the subset shared by ClickHouse 18.16 (Debian package) and current releases: no
JSONExtract, DateTime64, LowCardinality, Map or window functions.  Values travel as driver
parameters (``%(name)s``); identifiers (database name) are validated, never taken raw.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from clickhouse_driver import Client

from processors.domain.calendar import event_date
from processors.domain.history import EventHistory
from processors.domain.model import Consumed
from processors.runtime.apply import commit_batch
from processors.runtime.contracts import Binding, EventKey
from projections.sql.eventrow import (
    check_group_by,
    check_kind,
    date_text,
    dumps,
    parse_occurred_at,
)
from projections.store import COUNT_KINDS
from schemas.privacy import erase_event, strip_sensitive

DEFAULT_TOPIC = "careledger.events"
MAX_VERSION = 2**63 - 1
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
KEY_COLUMNS = ("program", "service", "visit_kind", "placement_kind", "need", "category")

EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "String"),
    ("type", "String"),
    ("version", "UInt32"),
    ("occurred_at", "DateTime('Asia/Shanghai')"),
    ("date", "Date"),
    ("person_id", "String"),
    ("town", "String"),
    ("village", "String"),
    ("source", "String"),
    ("program", "String"),
    ("service", "String"),
    ("visit_kind", "String"),
    ("placement_kind", "String"),
    ("need", "String"),
    ("category", "String"),
    ("amount_fen", "Int64"),
    ("positions", "Int32"),
    ("reverses", "String"),
    ("period", "String"),
    ("body", "String"),
    ("kafka_partition", "Int32"),
    ("kafka_offset", "Int64"),
    ("ingest_version", "UInt64"),
)
SNAPSHOT_COLUMNS = tuple(
    name for name, _ in EVENT_COLUMNS if name not in ("kafka_partition", "kafka_offset", "ingest_version")
)


def parse_clickhouse_url(url: str) -> dict[str, Any]:
    """``clickhouse://[user[:password]@]host[:port]/database`` -> connection kwargs + database."""
    parsed = urlparse(url)
    if parsed.scheme != "clickhouse":
        raise ValueError(f"not a clickhouse:// URL: {url!r}")
    database = unquote(parsed.path.lstrip("/")) or "default"
    if not _IDENT.match(database):
        raise ValueError(f"invalid ClickHouse database name {database!r} (letters, digits, _)")
    kwargs: dict[str, Any] = {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 9000,
        "user": unquote(parsed.username) if parsed.username else "default",
        "password": unquote(parsed.password) if parsed.password else "",
    }
    query = parse_qs(parsed.query)
    if "connect_timeout" in query:
        kwargs["connect_timeout"] = float(query["connect_timeout"][0])
    return {"database": database, "kwargs": kwargs}


HISTORY = EventHistory()


class ClickHouseBatch:
    """One batch on ClickHouse (``processors.runtime.contracts.UnitOfWork``): positions are read
    from ``consumer_offsets``; re-sent ``event_id``s are not looked up (the replacing engine and
    every query collapse copies), and there is no state to load."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store

    def offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = set(partitions)
        return {p: o for p, o in self.store.offsets().items() if p in wanted}

    def known(self, keys: Sequence[EventKey]) -> set[EventKey]:
        return set()

    def load(self, plan: None) -> None:
        return None

    def write(self, changes: list[Consumed], positions: dict[int, int]) -> None:
        if changes:
            self.store.insert_events(changes)
        self.store.insert_offsets(positions)


class ClickHouseStore:
    """ProjectionStore on ClickHouse (clickhouse-driver, native protocol)."""

    def __init__(
        self,
        url: str,
        projection: str = "clickhouse",
        topic: str = DEFAULT_TOPIC,
        rules: Any = None,  # accepted for a uniform constructor; counts need no rules
    ) -> None:
        spec = parse_clickhouse_url(url)
        self.url = url
        self.name = projection
        self.projection = projection
        self.topic = topic
        self.database = spec["database"]
        self._kwargs = spec["kwargs"]
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._db_ready = False

    # ------------------------------------------------------------------ connection / schema
    def _conn(self) -> Client:
        if self._client is None:
            if not self._db_ready:
                bootstrap = Client(database="default", **self._kwargs)
                try:
                    bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
                finally:
                    bootstrap.disconnect()
                self._db_ready = True
            self._client = Client(database=self.database, **self._kwargs)
        return self._client

    def _execute(self, query: str, params: Any = None, **kwargs: Any) -> Any:
        with self._lock:
            client = self._conn()
            try:
                return client.execute(query, params, **kwargs)
            except Exception:
                # drop a connection in an unknown state; the next call reconnects
                client.disconnect()
                self._client = None
                raise

    def migrate(self) -> None:
        cols = ",\n  ".join(f"`{name}` {typ}" for name, typ in EVENT_COLUMNS)
        self._execute(
            f"CREATE TABLE IF NOT EXISTS events (\n  {cols}\n) "
            "ENGINE = ReplacingMergeTree(ingest_version) "
            "PARTITION BY toYYYYMM(`date`) ORDER BY (`type`, event_id)"
        )
        self._execute(
            "CREATE TABLE IF NOT EXISTS consumer_offsets (\n"
            "  `projection` String, `topic` String, `partition` Int32, `offset` UInt64\n) "
            "ENGINE = ReplacingMergeTree(`offset`) ORDER BY (`projection`, `topic`, `partition`)"
        )

    def reset(self) -> None:
        """Drop this store's tables and create them empty again."""
        self.drop_read_models()
        self.migrate()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.disconnect()
                self._client = None

    # ------------------------------------------------------------------ write path
    def offsets(self) -> dict[int, int]:
        rows = self._execute(
            "SELECT `partition`, max(`offset`) FROM consumer_offsets "
            "WHERE `projection` = %(projection)s AND `topic` = %(topic)s GROUP BY `partition`",
            {"projection": self.projection, "topic": self.topic},
        )
        return {int(p): int(o) for p, o in rows}

    def binding(self) -> Binding:
        return Binding(HISTORY, self, self.close, self.ping)

    def drop_positions(self, projections: list[str]) -> None:
        """Alias positions stay: the replacing engine keeps one row per key and nothing reads them."""

    def drop_read_models(self) -> None:
        self._execute("DROP TABLE IF EXISTS events")
        self._execute("DROP TABLE IF EXISTS consumer_offsets")

    def ping(self) -> bool:
        return bool(self._execute("SELECT 1")[0][0] == 1)

    @contextmanager
    def transaction(self) -> Iterator[ClickHouseBatch]:
        """ClickHouse has no transactions: a batch writes its events, then its positions (see the
        module docstring for why a crash in between is harmless)."""
        yield ClickHouseBatch(self)

    def apply_batch(self, records: list[Consumed]) -> int:
        """The runtime's unit of work for decoded records (tests, tools); workers use the runtime."""
        if not records:
            return 0
        applied, _duplicates = commit_batch(HISTORY, self, records)
        return applied

    def insert_events(self, records: list[Consumed]) -> None:
        columns: dict[str, list[Any]] = {name: [] for name, _ in EVENT_COLUMNS}
        for rec in records:
            assert rec.event is not None
            self._append_row(columns, rec.event, rec)
        names = ", ".join(f"`{name}`" for name, _ in EVENT_COLUMNS)
        self._execute(f"INSERT INTO events ({names}) VALUES", [columns[name] for name, _ in EVENT_COLUMNS],
                      columnar=True)

    def insert_offsets(self, positions: dict[int, int]) -> None:
        parts = sorted(positions)
        self._execute(
            "INSERT INTO consumer_offsets (`projection`, `topic`, `partition`, `offset`) VALUES",
            [[self.projection] * len(parts), [self.topic] * len(parts), parts, [positions[p] for p in parts]],
            columnar=True,
        )

    @staticmethod
    def _append_row(columns: dict[str, list[Any]], evt: dict[str, Any], rec: Consumed) -> None:
        payload = evt.get("payload") or {}
        occurred = str(evt["occurred_at"])
        columns["event_id"].append(str(evt["event_id"]))
        columns["type"].append(str(evt["type"]))
        columns["version"].append(int(evt.get("version") or 1))
        columns["occurred_at"].append(int(parse_occurred_at(occurred).timestamp()))
        columns["date"].append(date.fromisoformat(event_date(occurred)))
        columns["person_id"].append(str(evt.get("person_id") or ""))
        columns["town"].append(str(evt.get("town") or ""))
        columns["village"].append(str(evt.get("village") or ""))
        columns["source"].append(str(evt.get("source") or ""))
        for name in KEY_COLUMNS:
            value = payload.get(name)
            columns[name].append("" if value is None else str(value))
        columns["amount_fen"].append(int(payload.get("amount_fen") or 0))
        columns["positions"].append(int(payload.get("positions") or 0))
        columns["reverses"].append(str(payload.get("reverses") or ""))
        columns["period"].append(str(payload.get("period") or ""))
        columns["body"].append(dumps(strip_sensitive(evt)))  # sensitive fields never reach ClickHouse
        columns["kafka_partition"].append(int(rec.partition))
        columns["kafka_offset"].append(int(rec.offset))
        columns["ingest_version"].append(MAX_VERSION - int(rec.offset))

    # ------------------------------------------------------------------ erasure
    def forget(self, person_id: str, tombstone_id: str, timeout_s: float = 300.0) -> dict[str, int]:
        """Purge a forgotten person (docs/privacy.md): their history rows are re-inserted as the
        erased rows of the tombstone id (what replay writes), then the originals are deleted by an
        ``ALTER TABLE ... DELETE`` mutation (ClickHouse 18.12+), awaited.  Insert first: a crash in
        between leaves two copies of an ``event_id``, which every query collapses anyway, and
        re-running forget finishes the job.  ``body`` never holds sensitive fields here; the
        ``category`` column becomes ``erased``."""
        names = ", ".join(f"`{name}`" for name, _ in EVENT_COLUMNS)
        rows = self._execute(
            "SELECT DISTINCT `body`, `kafka_partition`, `kafka_offset` FROM events WHERE person_id = %(pid)s",
            {"pid": person_id},
        )
        if not rows:
            return {"events": 0}
        columns: dict[str, list[Any]] = {name: [] for name, _ in EVENT_COLUMNS}
        for body, partition, offset in rows:
            erased = erase_event(json.loads(body), tombstone_id)
            self._append_row(columns, erased, Consumed(int(partition), int(offset), erased))
        self._execute(f"INSERT INTO events ({names}) VALUES", [columns[name] for name, _ in EVENT_COLUMNS],
                      columnar=True)
        self._execute("ALTER TABLE events DELETE WHERE person_id = %(pid)s", {"pid": person_id})
        deadline = time.monotonic() + timeout_s
        while self._execute(
            "SELECT count() FROM system.mutations WHERE database = %(db)s AND `table` = 'events' AND is_done = 0",
            {"db": self.database},
        )[0][0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"ClickHouse mutation deleting person rows not done after {timeout_s}s")
            time.sleep(0.2)
        return {"events": len(rows)}

    # ------------------------------------------------------------------ counts
    def _counts_query(
        self,
        kind: str,
        group_by: list[str],
        key: str | None,
        date_from: Any,
        date_to: Any,
        town: str | None,
    ) -> tuple[str, dict[str, Any]]:
        event_type, key_field = check_kind(kind)
        cols = check_group_by(group_by)
        params: dict[str, Any] = {"type": event_type}
        where = ["`type` = %(type)s"]
        key_expr = f"`{key_field}`" if key_field else "''"
        if key is not None:
            if key_field is None:
                if key != "":
                    where.append("0")
            else:
                where.append(f"{key_expr} = %(key)s")
                params["key"] = key
        if town is not None:
            where.append("town = %(town)s")
            params["town"] = town
        if date_from is not None:
            where.append("`date` >= toDate(%(date_from)s)")
            params["date_from"] = date_text(date_from)
        if date_to is not None:
            where.append("`date` <= toDate(%(date_to)s)")
            params["date_to"] = date_text(date_to)
        if kind == "payment":
            where.append(
                "(person_id, event_id) NOT IN "
                "(SELECT person_id, reverses FROM events WHERE `type` = 'payment.reversed')"
            )
        group_src = {
            "key": f"any({key_expr}) AS g_key",
            "town": "any(town) AS g_town",
            "date": "any(toString(`date`)) AS g_date",
            "month": "any(substring(toString(`date`), 1, 7)) AS g_month",
        }
        inner_cols = ["event_id", "any(person_id) AS pid", "any(amount_fen) AS amt", "any(positions) AS pos"]
        inner_cols += [group_src[c] for c in cols]
        # Only fixed fragments from this module are joined here; values are %(name)s parameters.
        inner = (
            f"SELECT {', '.join(inner_cols)} FROM events "  # noqa: S608
            f"WHERE {' AND '.join(where)} GROUP BY event_id"
        )
        outer_cols = [f"g_{c}" for c in cols] + [
            "count() AS events",
            "uniqExactIf(pid, pid != '') AS persons",
            "sum(amt) AS amount_fen",
            "sum(pos) AS positions",
        ]
        query = f"SELECT {', '.join(outer_cols)} FROM ({inner})"  # noqa: S608
        if cols:
            order = ", ".join(f"g_{c}" for c in cols)
            query += f" GROUP BY {order} ORDER BY {order}"
        return query, params

    def counts(
        self,
        kind: str,
        key: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        town: str | None = None,
    ) -> dict[str, int]:
        query, params = self._counts_query(kind, [], key, date_from, date_to, town)
        rows = self._execute(query, params)
        events, persons, amount, positions = rows[0] if rows else (0, 0, 0, 0)
        return {"events": int(events), "persons": int(persons), "amount_fen": int(amount or 0),
                "positions": int(positions or 0)}

    def grouped_counts(
        self,
        kind: str,
        group_by: list[str],
        key: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        town: str | None = None,
    ) -> list[dict[str, Any]]:
        cols = check_group_by(group_by)
        query, params = self._counts_query(kind, cols, key, date_from, date_to, town)
        out: list[dict[str, Any]] = []
        for row in self._execute(query, params):
            item = dict(zip(cols, row[: len(cols)], strict=True))
            events, persons, amount, positions = row[len(cols) :]
            if not cols and not events:
                continue
            item.update(events=int(events), persons=int(persons), amount_fen=int(amount or 0),
                        positions=int(positions or 0))
            out.append(item)
        return out

    # ------------------------------------------------------------------ test / replay support
    def fingerprint(self) -> dict[str, Any]:
        return {**{kind: self.counts(kind) for kind in COUNT_KINDS}, "event_count": self.event_count()}

    def event_count(self) -> int:
        return int(self._execute("SELECT uniqExact(event_id) FROM events")[0][0])

    def snapshot_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """``{"events": sorted distinct rows}`` without Kafka positions (copies collapse)."""
        names = ", ".join(f"`{c}`" for c in SNAPSHOT_COLUMNS)
        rows = self._execute(f"SELECT DISTINCT {names} FROM events")  # noqa: S608 (constant names)
        idx_occ = SNAPSHOT_COLUMNS.index("occurred_at")
        idx_date = SNAPSHOT_COLUMNS.index("date")
        out = []
        for row in rows:
            r = list(row)
            r[idx_occ] = r[idx_occ].isoformat()
            r[idx_date] = r[idx_date].isoformat()
            out.append(tuple(r))
        return {"events": sorted(out)}


__all__ = ["DEFAULT_TOPIC", "ClickHouseStore", "parse_clickhouse_url"]
