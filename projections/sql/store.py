"""The SQL read-model store (SQLite by default, PostgreSQL via psycopg 3).

Writes go through ``apply_batch`` only, effectively-once (docs/architecture.md, "Effectively-once
batch"): one transaction per batch that reads the stored offsets, drops records at or below them,
drops re-sent ``event_id``s, runs the pure ``Projector`` over the rest and writes every effect with
bulk statements (executemany inserts, additive upserts), then stores the new offsets.  A crash
anywhere before COMMIT leaves nothing behind; a redelivered batch is skipped by its offsets.

All SQL is built with SQLAlchemy Core constructs and bound parameters.
"""

from __future__ import annotations

import json
import secrets
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from time import perf_counter
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    distinct,
    event,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from processors.domain.aggregate import PersonAggregate
from processors.domain.calendar import event_date, instant_key
from processors.domain.model import Alert, AlertAction, Consumed, FactKey
from processors.domain.reducer import Projector
from processors.domain.rules_config import default_rules
from processors.domain.warnings import evaluate_warnings
from projections.sql import tables as t
from projections.sql.eventrow import (
    check_group_by,
    check_kind,
    date_text,
    dumps,
    iso,
)
from projections.sql.migrate import upgrade as alembic_upgrade
from projections.store import fresh_records
from schemas.privacy import ERASED, erase_event

DEFAULT_TOPIC = "careledger.events"
TOKEN_PARTITION = -1  # offsets row holding the last writer's token (see the aggregate cache)
MAX_LIMIT = 10_000


class EventApplyError(RuntimeError):
    """The pure projector raised on one event; the batch was rolled back (nothing written).

    Carries the record's position so the worker can dead-letter that one record and retry the
    rest of the batch instead of blocking the partition.
    """

    def __init__(self, partition: int, offset: int, event_id: str | None, cause: BaseException):
        super().__init__(
            f"projector failed on partition {partition} offset {offset} event_id {event_id!r}: "
            f"{type(cause).__name__}: {cause}"
        )
        self.partition = partition
        self.offset = offset
        self.event_id = event_id
        self.cause = cause


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # None sorts first in every column without comparing None with a value.
    return tuple((0,) if v is None else (1, v) for v in row)


def _state_text(agg: PersonAggregate) -> str:
    text = agg.to_json()
    return text if isinstance(text, str) else dumps(text)


EVENT_ROW = ("event_id", "type", "person_id", "town", "village", "date", "occurred_at", "version", "body",
             "partition", "offset")
PERSON_ROW = ("person_id", "town", "village", "status", "category", "grade", "hardship", "registered_on",
              "certificate_expires", "last_home_visit", "state")
ALERT_ROW = ("alert_id", "rule", "severity", "person_id", "town", "status", "event_ids", "detected_at",
             "detected_utc", "hazard", "program", "period", "updated_offset")


def _person_row(person_id: str, agg: PersonAggregate) -> tuple[Any, ...]:
    grade = getattr(agg, "grade", None)
    hardship = getattr(agg, "hardship", None)
    return (
        person_id,
        getattr(agg, "town", None),
        getattr(agg, "village", None),
        getattr(agg, "status", None),
        getattr(agg, "category", None),
        int(grade) if grade is not None else None,
        bool(hardship) if hardship is not None else None,
        iso(getattr(agg, "registered_on", None)),
        iso(getattr(agg, "certificate_expires", None)),
        iso(getattr(agg, "last_home_visit", None)),
        _state_text(agg),
    )


def _alert_row(alert: Alert, offset: int) -> tuple[Any, ...]:
    return (
        alert.alert_id,
        alert.rule,
        alert.severity,
        alert.person_id,
        alert.town,
        alert.status,
        json.dumps(list(alert.event_ids), ensure_ascii=False),
        alert.detected_at,
        instant_key(alert.detected_at),
        alert.hazard,
        alert.program,
        alert.period,
        offset,
    )


def alert_message(alert: Alert) -> dict[str, Any]:
    """``Alert.to_dict()`` without ``dataclasses.asdict`` (a hot path: one per alert change)."""
    out: dict[str, Any] = {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "severity": alert.severity,
        "person_id": alert.person_id,
        "status": alert.status,
        "event_ids": list(alert.event_ids),
        "detected_at": alert.detected_at,
    }
    for name in ("town", "hazard", "program", "period"):
        value = getattr(alert, name)
        if value is not None:
            out[name] = value
    return out


_ALERT_OPTIONAL = ("town", "hazard", "program", "period", "acknowledged_by", "acknowledged_at",
                   "resolved_by", "resolved_at")


def _alert_item(row: Any) -> dict[str, Any]:
    m = row._mapping
    item: dict[str, Any] = {
        "alert_id": m["alert_id"],
        "rule": m["rule"],
        "severity": m["severity"],
        "person_id": m["person_id"],
        "status": m["status"],
        "event_ids": json.loads(m["event_ids"]),
        "detected_at": m["detected_at"],
    }
    for name in _ALERT_OPTIONAL:
        if m[name] is not None:
            item[name] = m[name]
    return item


MIGRATION_LOCK_KEY = zlib.crc32(b"careledger-sql-schema-migration") & 0x7FFFFFFF


def alert_action_values(who: str, at: str, resolve: bool) -> dict[str, Any]:
    """Column values recording who acknowledged (and maybe resolved) an alert, and when.  The same
    for the API's immediate write and the processor applying the ``alert.handled`` event, so the
    two agree and a replay reproduces them."""
    values: dict[str, Any] = {"acknowledged_by": who, "acknowledged_at": at}
    if resolve:
        values.update(status="resolved", resolved_by=who, resolved_at=at)
    return values


@dataclass
class ProjectedRecords:
    """What a run of records changes, in the row shapes the write statements take."""

    event_rows: list[tuple[Any, ...]] = field(default_factory=list)
    facts: dict[FactKey, list[int]] = field(default_factory=dict)  # key -> [events, amount_fen, positions]
    changed_persons: set[str] = field(default_factory=set)
    alerts_last: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # the last row per alert
    outbox: list[tuple[Any, ...]] = field(default_factory=list)  # one row per alert change
    actions: list[AlertAction] = field(default_factory=list)


def project_records(projector: Projector, todo: list[Consumed], aggs: dict[str, Any], erased: set[Any],
                    now: str) -> ProjectedRecords:
    """Run the pure projector over ``todo`` (fresh, de-duplicated records), updating ``aggs`` in
    place.  Shared by the per-batch write path and the bulk loader so they cannot disagree.
    Persons in ``erased`` (forgotten) are counted but get no person row, alert or outbox row."""
    out = ProjectedRecords()
    facts, event_rows, alerts_last, outbox = out.facts, out.event_rows, out.alerts_last, out.outbox
    apply = projector.apply
    for rec in todo:
        evt = rec.event
        assert evt is not None
        pid = evt.get("person_id") or None
        try:
            new_agg, effects = apply(aggs.get(pid) if pid else None, evt)
        except Exception as exc:
            raise EventApplyError(rec.partition, rec.offset, evt.get("event_id"), exc) from exc
        if pid is not None and new_agg is not None:
            aggs[pid] = new_agg
        event_rows.append(
            (
                evt["event_id"],
                evt["type"],
                pid,
                evt.get("town") or "",
                evt.get("village"),
                event_date(evt["occurred_at"]),
                str(evt["occurred_at"]),
                int(evt.get("version") or 1),
                dumps(evt),
                rec.partition,
                rec.offset,
            )
        )
        for key, delta in effects.fact_deltas:
            acc = facts.get(key)
            if acc is None:
                facts[key] = [delta.events, delta.amount_fen, delta.positions]
            else:
                acc[0] += delta.events
                acc[1] += delta.amount_fen
                acc[2] += delta.positions
        if pid in erased:  # counted, but no person row, alert or outbox for a forgotten person
            continue
        if effects.person_changed:
            out.changed_persons.add(effects.person_changed)
        for alert in effects.alerts_changed:
            alerts_last[alert.alert_id] = _alert_row(alert, rec.offset)
            outbox.append((alert.alert_id, dumps(alert_message(alert)), now))
        out.actions.extend(effects.alert_actions)
    return out


class SqlStore:
    """ProjectionStore + PersonLevelStore on SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        rules: Any = None,
        projection: str = "sql",
        topic: str = DEFAULT_TOPIC,
        *,
        cache_persons: int = 25_000,  # a whole district; bounds the worker's memory (bench/pipeline.py RSS)
        echo: bool = False,
    ) -> None:
        self.url = url
        self.name = projection
        self.projection = projection
        self.topic = topic
        self.rules = rules if rules is not None else default_rules()
        self._projector = Projector(self.rules)
        self._write_lock = threading.Lock()
        # aggregates of recently written persons, valid while we are the only writer (checked
        # against the writer token stored with the offsets at each batch; dropped on any failure)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._writer_token = secrets.randbits(62)
        self._cache_max = cache_persons
        # cumulative seconds per apply_batch phase (read, project, write, commit) for metrics
        self.timings: dict[str, float] = {}
        self._engine = self._make_engine(url, echo)
        self.dialect = self._engine.dialect.name
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as upsert_insert

            self._in_chunk = 900
        elif self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert_insert

            self._in_chunk = 5000
        else:  # pragma: no cover - guarded by open_store
            raise ValueError(f"unsupported SQL dialect {self.dialect!r} (sqlite or postgresql)")
        self._upsert_insert = upsert_insert
        self._lock_key = zlib.crc32(f"{projection}\x00{topic}".encode()) & 0x7FFFFFFF
        self._compile_write_statements()

    # ------------------------------------------------------------------ engine / schema
    @staticmethod
    def _make_engine(url: str, echo: bool) -> Engine:
        if url.startswith("sqlite"):
            memory = url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url
            kwargs: dict[str, Any] = {
                "connect_args": {"timeout": 30, "check_same_thread": False},
                "echo": echo,
            }
            if memory:
                kwargs["poolclass"] = StaticPool
            engine = create_engine(url, **kwargs)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
                # We emit BEGIN ourselves (below) so reads and writes of a batch share one
                # transaction and the writer takes the lock up front (BEGIN IMMEDIATE).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                if not memory:
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                # checkpoint (and fsync) every ~40 MB of WAL rather than every 4 MB; truncate after
                cur.execute("PRAGMA wal_autocheckpoint=10000")
                cur.execute("PRAGMA journal_size_limit=67108864")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA temp_store=MEMORY")
                cur.execute("PRAGMA cache_size=-65536")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                mode = conn.get_execution_options().get("sqlite_begin")
                conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "immediate" else "BEGIN")

            return engine
        if url.startswith("postgresql"):
            if url.startswith(("postgresql://", "postgres://")):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return create_engine(url, echo=echo, pool_pre_ping=True)
        raise ValueError(f"unsupported SQL URL {url!r}: use sqlite:/// or postgresql+psycopg://")

    @property
    def engine(self) -> Engine:
        return self._engine

    def _writer(self) -> Connection:
        return self._engine.connect().execution_options(sqlite_begin="immediate")

    def migrate(self) -> None:
        """Create or upgrade the schema (Alembic, idempotent)."""
        with self._write_lock, self._writer() as conn:
            if self.dialect == "postgresql":
                with conn.begin():
                    # one schema per database: every migrator of it (workers of any projection,
                    # the API, replay) takes the same lock, whatever projection it writes
                    conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
                    alembic_upgrade(conn)
            else:
                alembic_upgrade(conn)
                if conn.in_transaction():
                    conn.commit()

    def reset(self) -> None:
        """Drop every table of this store (read models, outbox, offsets, migration version)
        and create an empty schema again."""
        with self._write_lock, self._writer() as conn, conn.begin():
            t.metadata.drop_all(conn)
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t.VERSION_TABLE}")
            self._forget_cache()
        self.migrate()

    def close(self) -> None:
        self._engine.dispose()

    # ------------------------------------------------------------------ write path
    def apply_batch(self, records: list[Consumed]) -> int:
        """Apply one batch effectively-once; return how many events were newly applied."""
        if not records:
            return 0
        with self._write_lock:
            started = perf_counter()
            try:
                with self._writer() as conn, conn.begin():
                    applied, touched, moved = self._apply(conn, records)
                    started = perf_counter()
                self._mark("commit", started)
            except BaseException:
                # the projector mutates aggregates in place: after a rollback the cached
                # objects may be ahead of the database
                self._forget_cache()
                raise
            self._remember(touched, moved)
            return applied

    def bulk_loader(self, partitions: list[int], max_persons: int | None = None) -> Any:
        """A :class:`~projections.sql.bulk.SqlBulkLoad` when this store holds nothing of
        ``partitions`` yet (a rebuild, a backfill, a snapshot), else None: use ``apply_batch``."""
        from projections.sql.bulk import MAX_PERSONS_IN_MEMORY, SqlBulkLoad, can_bulk_load

        if not can_bulk_load(self, partitions):
            return None
        self._forget_cache()  # another writer is about to move the offsets
        return SqlBulkLoad(self, max_persons or MAX_PERSONS_IN_MEMORY)

    def _mark(self, phase: str, since: float) -> float:
        now = perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + (now - since)
        return now

    # --- aggregate cache: the single writer keeps recently used aggregates between batches ----
    # Validity: every commit also stores this instance's random token under partition -1 of the
    # offsets table.  Finding another token there at the start of a batch means some other writer
    # (another worker after a rebalance, a replay, a reset) committed since our last batch.
    def _forget_cache(self) -> None:
        self._cache.clear()
        self._writer_token = secrets.randbits(62)

    def _remember(self, touched: dict[str, Any], moved: dict[int, int]) -> None:
        if self._cache_max <= 0:
            return
        cache = self._cache
        for pid, agg in touched.items():
            cache[pid] = agg
            cache.move_to_end(pid)
        while len(cache) > self._cache_max:
            cache.popitem(last=False)

    def _apply(
        self, conn: Connection, records: list[Consumed]
    ) -> tuple[int, dict[str, Any], dict[int, int]]:
        started = perf_counter()
        po = t.projection_offsets
        if self.dialect == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(self._lock_key)))

        # 1. offsets: drop records at or below the stored offset of their partition
        parts = sorted({r.partition for r in records})
        current: dict[int, int] = dict(
            conn.execute(
                select(po.c.partition, po.c.offset).where(
                    po.c.projection == self.projection,
                    po.c.topic == self.topic,
                    po.c.partition.in_([TOKEN_PARTITION, *parts]),
                )
            ).all()
        )
        if current.pop(TOKEN_PARTITION, None) != self._writer_token:
            self._cache.clear()
        # 2. event_id de-duplication: inside the batch (here), then against the events table
        moved: dict[int, int] = {}
        candidates = fresh_records(records, current, set(), moved)
        if not moved:
            return 0, {}, {}
        if candidates:
            ev = t.events
            ids = [rec.event["event_id"] for rec in candidates]  # type: ignore[index]
            existing: set[str] = set()
            for chunk in _chunks(ids, self._in_chunk):
                existing.update(conn.scalars(select(ev.c.event_id).where(ev.c.event_id.in_(chunk))))
            todo = [rec for rec in candidates if rec.event["event_id"] not in existing]  # type: ignore[index]
        else:
            todo = []

        # 3. load the aggregates of the batch's persons; a forgotten person's (tombstone id,
        # ``erased`` events, docs/privacy.md) has no stored state: rebuilt from its event rows
        erased = {rec.event.get("person_id") for rec in todo if rec.event.get("erased")}  # type: ignore[union-attr]
        aggs = self._load_aggregates(
            conn, {rec.event.get("person_id") for rec in todo} - {None, ""} - erased  # type: ignore[union-attr]
        )
        if erased:
            aggs.update(self._rebuild_erased(conn, erased))
        mark = self._mark("read", started)

        # 4. pure projection
        projected = project_records(self._projector, todo, aggs, erased, _now())
        facts, changed_persons, alerts_last = projected.facts, projected.changed_persons, projected.alerts_last
        outbox, actions, event_rows = projected.outbox, projected.actions, projected.event_rows

        mark = self._mark("project", mark)

        # 5. bulk writes (executemany of precompiled statements)
        bulk = self._bulk
        if event_rows:
            bulk(conn, "events", event_rows)
        self._write_facts(conn, facts)
        person_rows = [
            _person_row(pid, aggs[pid]) for pid in sorted(changed_persons) if aggs.get(pid) is not None
        ]
        if person_rows:
            bulk(conn, "persons", person_rows)
        if alerts_last:
            bulk(conn, "alerts", list(alerts_last.values()))
        for action in actions:  # rare (people clicking): one statement each, after the upserts
            conn.execute(update(t.alerts).where(t.alerts.c.alert_id == action.alert_id)
                         .values(**alert_action_values(action.by, action.at, action.action == "resolve")))
        if outbox:
            bulk(conn, "outbox", outbox)
        bulk(conn, "offsets", [(self.projection, self.topic, p, o) for p, o in sorted(moved.items())]
             + [(self.projection, self.topic, TOKEN_PARTITION, self._writer_token)])
        self._mark("write", mark)
        for pid in erased:
            aggs.pop(pid, None)  # never cached: their state lives in their event rows only
        return len(event_rows), aggs, moved

    def _rebuild_erased(self, conn: Connection, person_ids: Iterable[Any]) -> dict[str, Any]:
        """Aggregates of forgotten persons, folded from their stored (erased) event rows."""
        ev = t.events
        aggs: dict[str, Any] = {}
        ids = sorted(p for p in person_ids if p)
        for chunk in _chunks(ids, self._in_chunk):
            rows = conn.execute(select(ev.c.person_id, ev.c.body).where(ev.c.person_id.in_(chunk))
                                .order_by(ev.c.partition, ev.c.offset))
            for pid, body in rows:
                aggs[pid], _ = self._projector.apply(aggs.get(pid), json.loads(body))
        return aggs

    # ------------------------------------------------------------------ erasure
    def forget(self, person_id: str, tombstone_id: str) -> dict[str, int]:
        """Purge a forgotten person (docs/privacy.md): their event rows become erased rows of the
        tombstone id (``schemas.privacy.erase_event``, the rule replay applies), their count facts
        move to the tombstone id (category ``erased``), their person row, alerts and alert outbox
        rows are deleted.  Then the freed pages are scrubbed (SQLite: VACUUM + WAL truncate;
        PostgreSQL: VACUUM).  Idempotent; returns how many rows of each kind changed."""
        ev, cf, p, a, ob = t.events, t.count_facts, t.persons, t.alerts, t.alert_outbox
        done = {"events": 0, "count_facts": 0, "persons": 0, "alerts": 0, "alert_outbox": 0}
        with self._write_lock, self._writer() as conn, conn.begin():
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(self._lock_key)))
            rows = conn.execute(select(ev.c.event_id, ev.c.body).where(ev.c.person_id == person_id)).all()
            for event_id, body in rows:
                conn.execute(update(ev).where(ev.c.event_id == event_id).values(
                    person_id=tombstone_id, body=dumps(erase_event(json.loads(body), tombstone_id))))
            done["events"] = len(rows)
            facts = conn.execute(select(cf.c.kind, cf.c.key, cf.c.town, cf.c.date, cf.c.events, cf.c.amount_fen,
                                        cf.c.positions).where(cf.c.person_id == person_id)).all()
            if facts:
                conn.execute(delete(cf).where(cf.c.person_id == person_id))
                self._bulk(conn, "facts", [
                    (kind, ERASED if kind == "person" else key, town, day, tombstone_id, n, amount, positions)
                    for kind, key, town, day, n, amount, positions in facts])
            done["count_facts"] = len(facts)
            alert_ids = list(conn.scalars(select(a.c.alert_id).where(a.c.person_id == person_id)))
            for chunk in _chunks(alert_ids, self._in_chunk):
                done["alert_outbox"] += conn.execute(delete(ob).where(ob.c.alert_id.in_(chunk))).rowcount or 0
            done["alerts"] = conn.execute(delete(a).where(a.c.person_id == person_id)).rowcount or 0
            done["persons"] = conn.execute(delete(p).where(p.c.person_id == person_id)).rowcount or 0
            self._forget_cache()
            po = t.projection_offsets  # a new writer token: every worker drops its aggregate cache
            conn.execute(update(po).where(po.c.partition == TOKEN_PARTITION).values(offset=self._writer_token))
        self.scrub()
        return done

    def scrub(self) -> None:
        """Rewrite the database so deleted or overwritten rows leave the files."""
        import time

        with self._write_lock:
            raw = self._engine.raw_connection()  # VACUUM runs outside any transaction
            try:
                if self.dialect == "sqlite":
                    cur = raw.cursor()
                    cur.execute("VACUUM")
                    for _ in range(50):  # a reader's snapshot may hold the WAL for a moment
                        busy = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                        if not busy:
                            break
                        time.sleep(0.2)
                    cur.close()
                else:
                    driver: Any = raw.driver_connection
                    driver.autocommit = True
                    try:
                        for name in ("events", "count_facts", "persons", "alerts", "alert_outbox"):
                            driver.execute(f"VACUUM {name}")
                    finally:
                        driver.autocommit = False
            finally:
                raw.close()

    def _write_facts(self, conn: Connection, facts: dict[FactKey, list[int]]) -> None:
        rows: list[tuple[Any, ...]] = []
        shrinking: list[tuple[Any, ...]] = []
        for key, (events, amount, positions) in facts.items():
            if events == 0 and amount == 0 and positions == 0:
                continue
            pk = (key.kind, key.key or "", key.town or "", key.date, key.person_id or "")
            rows.append((*pk, events, amount, positions))
            if events < 0 or amount < 0 or positions < 0:
                shrinking.append(pk)
        if rows:
            self._bulk(conn, "facts", rows)
        if shrinking:
            self._bulk(conn, "facts_delete_zero", shrinking)

    # Statements of the write path, in the column order of the row tuples given to ``_bulk``.
    def _build_write_statements(self) -> dict[str, tuple[Any, tuple[str, ...]]]:
        up = self._upsert_insert
        cf, po, p, a = t.count_facts, t.projection_offsets, t.persons, t.alerts

        facts = up(cf)
        facts = facts.on_conflict_do_update(
            index_elements=[cf.c.kind, cf.c.key, cf.c.town, cf.c.date, cf.c.person_id],
            set_={
                "events": cf.c.events + facts.excluded.events,
                "amount_fen": cf.c.amount_fen + facts.excluded.amount_fen,
                "positions": cf.c.positions + facts.excluded.positions,
            },
        )
        fact_pk = ("kind", "key", "town", "date", "person_id")
        delete_zero = delete(cf).where(
            *[cf.c[name] == bindparam(f"b_{name}") for name in fact_pk],
            cf.c.events == 0,
            cf.c.amount_fen == 0,
            cf.c.positions == 0,
        )
        persons = up(p)
        persons = persons.on_conflict_do_update(
            index_elements=[p.c.person_id],
            set_={c.name: persons.excluded[c.name] for c in p.c if c.name != "person_id"},
        )
        keep = {"alert_id", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at"}
        alerts = up(a)
        alerts = alerts.on_conflict_do_update(
            index_elements=[a.c.alert_id],
            set_={c.name: alerts.excluded[c.name] for c in a.c if c.name not in keep},
        )
        offsets = up(po)
        offsets = offsets.on_conflict_do_update(
            index_elements=[po.c.projection, po.c.topic, po.c.partition],
            set_={"offset": offsets.excluded.offset},
        )
        return {
            "events": (insert(t.events), EVENT_ROW),
            "facts": (facts, (*fact_pk, "events", "amount_fen", "positions")),
            "facts_delete_zero": (delete_zero, tuple(f"b_{name}" for name in fact_pk)),
            "persons": (persons, PERSON_ROW),
            "alerts": (alerts, ALERT_ROW),
            "outbox": (insert(t.alert_outbox), ("alert_id", "body", "created_at")),
            "offsets": (offsets, ("projection", "topic", "partition", "offset")),
        }

    def _compile_write_statements(self) -> None:
        """Compile each write statement once for this dialect.  ``_bulk`` then hands row tuples
        straight to the DBAPI ``executemany`` (the per-row parameter processing of the ORM-less
        Core path costs more than SQLite's own work at these batch sizes)."""
        dialect = self._engine.dialect
        self._compiled: dict[str, tuple[str, Any]] = {}
        for name, (stmt, keys) in self._build_write_statements().items():
            compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
            sql = compiled.string
            defaults = compiled.params  # binds not fed by the rows (constants in the statement)
            if compiled.positional:
                names = [compiled.escaped_bind_names.get(n, n) for n in compiled.positiontup]
                if names == list(keys):
                    self._compiled[name] = (sql, None)
                else:
                    slots = [(keys.index(n), None) if n in keys else (-1, defaults[n]) for n in names]
                    self._compiled[name] = (sql, slots)
            else:
                consts = {n: v for n, v in defaults.items() if n not in keys}
                self._compiled[name] = (sql, (keys, consts))

    def _bulk(self, conn: Connection, name: str, rows: list[tuple[Any, ...]]) -> None:
        sql, how = self._compiled[name]
        if how is None:
            params: list[Any] = rows
        elif isinstance(how, list):
            params = [tuple(row[i] if i >= 0 else const for i, const in how) for row in rows]
        else:
            keys, consts = how
            params = [{**consts, **dict(zip(keys, row, strict=True))} for row in rows]
        since = perf_counter()
        conn.exec_driver_sql(sql, params)
        self._mark("sql_" + name, since)

    def _load_aggregates(self, conn: Connection, person_ids: Iterable[str]) -> dict[str, Any]:
        cache = self._cache
        aggs: dict[str, Any] = {}
        missing: list[str] = []
        for pid in person_ids:
            agg = cache.get(pid)
            if agg is None:
                missing.append(pid)
            else:
                aggs[pid] = agg
        missing.sort()
        p = t.persons
        from_json = PersonAggregate.from_json
        for chunk in _chunks(missing, self._in_chunk):
            for pid, state in conn.execute(select(p.c.person_id, p.c.state).where(p.c.person_id.in_(chunk))):
                aggs[pid] = from_json(state)
        return aggs

    # ------------------------------------------------------------------ offsets / outbox
    def offsets(self) -> dict[int, int]:
        po = t.projection_offsets
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(po.c.partition, po.c.offset).where(
                    po.c.projection == self.projection,
                    po.c.topic == self.topic,
                    po.c.partition >= 0,
                )
            ).all()
        return {int(p): int(o) for p, o in rows}

    def outbox_pending(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Unsent alert changes, oldest first: ``[{"seq", "alert_id", "alert": dict}]``."""
        ob = t.alert_outbox
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(ob.c.seq, ob.c.alert_id, ob.c.body, ob.c.created_at)
                .where(ob.c.sent_at.is_(None))
                .order_by(ob.c.seq)
                .limit(max(0, int(limit)))
            ).all()
        return [
            {"seq": int(seq), "alert_id": aid, "alert": json.loads(body), "created_at": created}
            for seq, aid, body, created in rows
        ]

    def mark_sent(self, seqs: Iterable[int]) -> int:
        seq_list = sorted({int(s) for s in seqs})
        if not seq_list:
            return 0
        ob = t.alert_outbox
        n = 0
        now = _now()
        with self._write_lock, self._writer() as conn, conn.begin():
            for chunk in _chunks(seq_list, self._in_chunk):
                res = conn.execute(
                    update(ob).where(ob.c.seq.in_(chunk), ob.c.sent_at.is_(None)).values(sent_at=now)
                )
                n += res.rowcount or 0
        return n

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        """One alert by id (None if unknown)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(t.alerts).where(t.alerts.c.alert_id == alert_id)).first()
        return _alert_item(row) if row is not None else None

    def acknowledge_alert(
        self, alert_id: str, who: str, at: str | datetime | None = None, resolve: bool = False
    ) -> dict[str, Any] | None:
        """Record who acknowledged (and optionally resolved) an alert; return it, or None if unknown."""
        a = t.alerts
        values = alert_action_values(who, iso(at) or _now(), resolve)
        with self._write_lock, self._writer() as conn, conn.begin():
            res = conn.execute(update(a).where(a.c.alert_id == alert_id).values(**values))
            if not res.rowcount:
                return None
            row = conn.execute(select(a).where(a.c.alert_id == alert_id)).one()
        return _alert_item(row)

    # ------------------------------------------------------------------ counts
    def _fact_filters(
        self, kind: str, key: str | None, date_from: Any, date_to: Any, town: str | None
    ) -> list[Any]:
        check_kind(kind)
        cf = t.count_facts
        conds = [cf.c.kind == kind]
        if key is not None:
            conds.append(cf.c.key == key)
        if town is not None:
            conds.append(cf.c.town == town)
        if date_from is not None:
            conds.append(cf.c.date >= date_text(date_from))
        if date_to is not None:
            conds.append(cf.c.date <= date_text(date_to))
        return conds

    @staticmethod
    def _measures() -> list[Any]:
        cf = t.count_facts
        return [
            func.coalesce(func.sum(cf.c.events), 0).label("events"),
            func.count(
                distinct(case((and_(cf.c.person_id != "", cf.c.events > 0), cf.c.person_id)))
            ).label("persons"),
            func.coalesce(func.sum(cf.c.amount_fen), 0).label("amount_fen"),
            func.coalesce(func.sum(cf.c.positions), 0).label("positions"),
        ]

    def counts(
        self,
        kind: str,
        key: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        town: str | None = None,
    ) -> dict[str, int]:
        conds = self._fact_filters(kind, key, date_from, date_to, town)
        with self._engine.connect() as conn:
            row = conn.execute(select(*self._measures()).where(*conds)).one()
        return {"events": int(row[0]), "persons": int(row[1]), "amount_fen": int(row[2]),
                "positions": int(row[3])}

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
        conds = self._fact_filters(kind, key, date_from, date_to, town)
        cf = t.count_facts
        exprs = {
            "key": cf.c.key,
            "town": cf.c.town,
            "date": cf.c.date,
            "month": func.substr(cf.c.date, 1, 7),
        }
        group_exprs = [exprs[c].label(c) for c in cols]
        stmt = select(*group_exprs, *self._measures()).where(*conds)
        if group_exprs:
            stmt = stmt.group_by(*[exprs[c] for c in cols]).order_by(*[exprs[c] for c in cols])
        out: list[dict[str, Any]] = []
        with self._engine.connect() as conn:
            for row in conn.execute(stmt):
                m = row._mapping
                item = {c: m[c] for c in cols}
                item.update(events=int(m["events"]), persons=int(m["persons"]),
                            amount_fen=int(m["amount_fen"]), positions=int(m["positions"]))
                if not cols and item["events"] == 0 and item["positions"] == 0 and item["amount_fen"] == 0:
                    continue
                out.append(item)
        return out

    # ------------------------------------------------------------------ alerts / warnings
    def alerts(
        self,
        rule: str | None = None,
        person_id: str | None = None,
        status: str | None = None,
        towns: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        a = t.alerts
        conds: list[Any] = []
        if rule is not None:
            conds.append(a.c.rule == rule)
        if person_id is not None:
            conds.append(a.c.person_id == person_id)
        if status is not None:
            conds.append(a.c.status == status)
        if towns is not None:
            if not towns:
                return {"total": 0, "items": []}
            conds.append(a.c.town.in_(sorted(set(towns))))
        limit = max(0, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(a).where(*conds)).scalar_one()
            rows = conn.execute(
                select(a)
                .where(*conds)
                .order_by(a.c.detected_utc.desc(), a.c.alert_id)
                .limit(limit)
                .offset(offset)
            ).all()
        return {"total": int(total), "items": [_alert_item(r) for r in rows]}

    def warnings(
        self,
        as_of: date,
        rule: str | None = None,
        person_id: str | None = None,
        towns: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        if isinstance(as_of, str):
            as_of = date.fromisoformat(as_of)
        p = t.persons
        conds: list[Any] = [p.c.status == "active"]
        if person_id is not None:
            conds.append(p.c.person_id == person_id)
        if towns is not None:
            if not towns:
                return {"total": 0, "items": []}
            conds.append(p.c.town.in_(sorted(set(towns))))
        found: list[dict[str, Any]] = []
        from_json = PersonAggregate.from_json
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=2000).execute(
                select(p.c.person_id, p.c.state).where(*conds)
            )
            for _pid, state in result:
                for w in evaluate_warnings(from_json(state), as_of, self.rules):
                    if rule is None or w.rule == rule:
                        found.append(w.to_dict())
        found.sort(key=lambda w: (w["since"], w["rule"], w["person_id"], w.get("need_id") or ""))
        limit = max(0, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        return {"total": len(found), "items": found[offset : offset + limit]}

    # ------------------------------------------------------------------ person level
    def person_timeline(self, person_id: str) -> dict[str, Any]:
        p, ev, a = t.persons, t.events, t.alerts
        with self._engine.connect() as conn:
            prow = conn.execute(select(p).where(p.c.person_id == person_id)).one_or_none()
            bodies = conn.scalars(
                select(ev.c.body).where(ev.c.person_id == person_id).order_by(ev.c.partition, ev.c.offset)
            ).all()
            arows = conn.execute(
                select(a).where(a.c.person_id == person_id).order_by(a.c.detected_utc, a.c.alert_id)
            ).all()
        person = None
        if prow is not None:
            person = {k: v for k, v in prow._mapping.items() if k != "state"}
            person["state"] = json.loads(prow._mapping["state"])
        return {
            "person": person,
            "events": [json.loads(b) for b in bodies],
            "alerts": [_alert_item(r) for r in arows],
        }

    def person_aggregate(self, person_id: str) -> Any:
        """The stored ``PersonAggregate`` of a person, or None."""
        p = t.persons
        with self._engine.connect() as conn:
            state = conn.scalar(select(p.c.state).where(p.c.person_id == person_id))
        return None if state is None else PersonAggregate.from_json(state)

    # ------------------------------------------------------------------ test / replay support
    _SNAPSHOT_COLUMNS = {
        "events": ("event_id", "type", "person_id", "town", "village", "date", "occurred_at",
                   "version", "body"),
        "count_facts": ("kind", "key", "town", "date", "person_id", "events", "amount_fen", "positions"),
        "persons": tuple(c.name for c in t.persons.c),
        "alerts": ("alert_id", "rule", "severity", "person_id", "town", "status", "event_ids",
                   "detected_at", "hazard", "program", "period"),
    }

    def snapshot_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every read-model row as sorted tuples, per table (events, count_facts, persons, alerts).

        Leaves out what legitimately differs between two correct runs over the same events:
        Kafka positions (``events.partition/offset``, ``alerts.updated_offset``), offsets,
        the outbox and human acknowledgement fields.
        """
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self._engine.connect() as conn:
            for name, cols in self._SNAPSHOT_COLUMNS.items():
                table = t.metadata.tables[name]
                rows = conn.execute(select(*[table.c[c] for c in cols])).all()
                out[name] = sorted((tuple(r) for r in rows), key=_sort_key)
        return out

    def event_count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.events)).scalar_one())

    def ping(self) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(literal(1))).scalar_one() == 1


__all__ = ["DEFAULT_TOPIC", "EventApplyError", "SqlStore"]
