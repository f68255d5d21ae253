"""The SQL read model (SQLite by default, PostgreSQL via psycopg 3), assembled from its parts.

Each job is its own module over one engine: ``writer`` (the runtime's unit of work: positions,
de-duplication keys, planned state, writes), ``queries`` (counts, alerts, warnings, persons),
``outbox`` (alert changes to publish, people's actions), ``erasure`` (forget).  :class:`SqlStore`
only wires them together and declares every capability callers use
(``projections.store.PersonLevelStore``).  Writing goes through the projection runtime
(``processors.runtime``); :meth:`SqlStore.apply_batch` is that runtime's one unit of work for
records already decoded (tests, tools).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from processors.domain.batch import ReadModel
from processors.domain.model import Consumed
from processors.domain.rules_config import RulesConfig, default_rules
from processors.runtime.apply import commit_batch
from processors.runtime.contracts import Binding, Positions
from projections.sql import erasure
from projections.sql import tables as t
from projections.sql.engines import IMMEDIATE, make_engine, write_transaction
from projections.sql.migrate import upgrade as alembic_upgrade
from projections.sql.notices import Clock, Published, escalate, reconcile, utc_now
from projections.sql.outbox import SqlOutbox
from projections.sql.queries import SqlQueries
from projections.sql.writer import SqlWriter
from projections.store import COUNT_KINDS

DEFAULT_TOPIC = "careledger.events"
MIGRATION_LOCK_KEY = zlib.crc32(b"careledger-sql-schema-migration") & 0x7FFFFFFF


class SqlStore:
    """``ProjectionStore`` + ``PersonLevelStore`` on SQLite or PostgreSQL."""

    def __init__(self, url: str, rules: RulesConfig | None = None, projection: str = "sql",
                 topic: str = DEFAULT_TOPIC, *, echo: bool = False, clock: Clock = utc_now) -> None:
        self.url = url
        self.name = projection
        self.projection = projection
        self.topic = topic
        self.rules = rules if rules is not None else default_rules()
        self.engine: Engine = make_engine(url, echo=echo)
        self.dialect = self.engine.dialect.name
        self.read_model = ReadModel(self.rules)
        self.writer = SqlWriter(self.engine, projection, topic, self.rules, clock)
        self.queries = SqlQueries(self.engine, self.rules)
        self.outbox = SqlOutbox(self.engine)

    # ---- schema ---------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade the schema (Alembic, idempotent; one migrator at a time)."""
        with self.engine.connect().execution_options(**IMMEDIATE) as conn:
            if self.dialect == "postgresql":
                with conn.begin():
                    # one schema per database: every migrator of it (workers of any projection, the
                    # API, replay) takes the same lock, whatever projection it writes
                    conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
                    alembic_upgrade(conn)
            else:
                alembic_upgrade(conn)
                if conn.in_transaction():
                    conn.commit()
        self.writer.forget_cached()

    def reset(self) -> None:
        """Drop every table of the read model (positions and outbox included) and migrate again."""
        self.drop_read_models()
        self.migrate()

    def close(self) -> None:
        self.engine.dispose()

    # ---- writing --------------------------------------------------------------------------------
    def apply_batch(self, records: list[Consumed]) -> int:
        """Apply decoded records in one unit of work (the runtime's steps 2-7); raises on failure
        with nothing written.  Workers use ``processors.runtime.ProjectionRuntime`` instead, which
        adds decoding, retries and dead-lettering around the same steps."""
        if not records:
            return 0
        applied, _duplicates = commit_batch(self.read_model, self.writer, records)
        return applied

    def offsets(self) -> Positions:
        return self.writer.offsets()

    def binding(self) -> Binding:
        return Binding(self.read_model, self.writer, self.close, self.ping, self.outbox, self,
                       resident=self.read_model.resident_state)

    def drop_positions(self, projections: list[str]) -> None:
        po = t.projection_offsets
        with write_transaction(self.engine) as conn:
            conn.execute(delete(po).where(po.c.projection.in_(projections)))

    def drop_read_models(self) -> None:
        with write_transaction(self.engine) as conn:
            t.metadata.drop_all(conn)
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t.VERSION_TABLE}")

    # ---- outbox and people's actions ------------------------------------------------------------
    def outbox_pending(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self.outbox.outbox_pending(limit)

    def outbox_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        return self.outbox.outbox_after(seq, limit)

    def outbox_last_seq(self) -> int:
        return self.outbox.outbox_last_seq()

    def mark_sent(self, seqs: Any) -> int:
        return self.outbox.mark_sent(seqs)

    def acknowledge_alert(self, alert_id: str, who: str, at: str | datetime | None = None,
                          resolve: bool = False) -> dict[str, Any] | None:
        return self.outbox.record_alert_action(alert_id, who, at, "resolve" if resolve else "acknowledge")

    def record_alert_action(self, alert_id: str, who: str, at: str | datetime | None, action: str,
                            assignee: str | None = None) -> dict[str, Any] | None:
        return self.outbox.record_alert_action(alert_id, who, at, action, assignee)

    def record_snooze(self, warning_id: str, person_id: str, until: str, reason: str, by: str, at: str) -> None:
        self.outbox.record_snooze(warning_id, person_id, until, reason, by, at)

    def sweep_warnings(self, now: datetime | None = None) -> Published:
        """Publish the need warnings due today that were never published and clear the fulfilled
        ones (projections/sql/notices.py); one transaction, serialised with the batches."""
        return self._publish(lambda conn, at: reconcile(conn, self.rules, at), now)

    def escalate(self, now: datetime | None = None, after: timedelta = timedelta(hours=24)) -> Published:
        """Publish once more the critical alerts unacknowledged ``after`` they were raised."""
        return self._publish(lambda conn, at: escalate(conn, at, after), now)

    def _publish(self, find: Callable[[Any, datetime], Published], now: datetime | None) -> Published:
        at = now or self.writer.clock()
        with write_transaction(self.engine, self.writer.lock_key) as conn:
            done = find(conn, at)
            if done.rows:
                conn.execute(insert(t.alert_outbox), done.rows)
        return done

    # ---- erasure --------------------------------------------------------------------------------
    def forget(self, person_id: str, tombstone_id: str) -> dict[str, int]:
        return erasure.forget(self.engine, person_id, tombstone_id, self.writer.lock_key)

    def scrub(self) -> None:
        erasure.scrub(self.engine)

    # ---- queries --------------------------------------------------------------------------------
    def counts(self, kind: str, key: str | None = None, date_from: date | None = None,
               date_to: date | None = None, town: str | None = None) -> dict[str, int]:
        return self.queries.counts(kind, key, date_from, date_to, town)

    def grouped_counts(self, kind: str, group_by: list[str], key: str | None = None, date_from: date | None = None,
                       date_to: date | None = None, town: str | None = None) -> list[dict[str, Any]]:
        return self.queries.grouped_counts(kind, group_by, key, date_from, date_to, town)

    def alerts(self, rule: str | None = None, person_id: str | None = None, status: str | None = None,
               towns: list[str] | None = None, limit: int = 100, offset: int = 0, **options: Any) -> dict[str, Any]:
        """``options``: ``sort``, ``assigned_to``, ``escalated``, ``identity`` (``SqlQueries.alerts``)."""
        return self.queries.alerts(rule, person_id, status, towns, limit, offset, **options)

    def alerts_summary(self, towns: list[str] | None = None, status: str = "open") -> list[dict[str, Any]]:
        return self.queries.alerts_summary(towns, status)

    def person_record(self, person_id: str, as_of: date, identity: bool = False) -> dict[str, Any] | None:
        return self.queries.person_record(person_id, as_of, identity)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        return self.queries.alert(alert_id)

    def warnings(self, as_of: date, rule: str | None = None, person_id: str | None = None,
                 towns: list[str] | None = None, limit: int = 100, offset: int = 0, *,
                 snoozed_too: bool = False, identity: bool = False) -> dict[str, Any]:
        return self.queries.warnings(as_of, rule, person_id, towns, limit, offset, snoozed_too=snoozed_too,
                                     identity=identity)

    def warnings_summary(self, as_of: date, towns: list[str] | None = None) -> list[dict[str, Any]]:
        return self.queries.warnings_summary(as_of, towns)

    def person_town(self, person_id: str) -> str | None:
        return self.queries.person_town(person_id)

    def person_aggregate(self, person_id: str) -> Any:
        return self.queries.person_aggregate(person_id)

    def person_timeline(self, person_id: str) -> dict[str, Any]:
        return self.queries.person_timeline(person_id)

    def snapshot_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        return self.queries.snapshot_rows()

    def fingerprint(self) -> dict[str, Any]:
        return {**{kind: self.counts(kind) for kind in COUNT_KINDS}, "event_count": self.event_count()}

    def event_count(self) -> int:
        return self.queries.event_count()

    def ping(self) -> bool:
        return self.queries.ping()


__all__ = ["DEFAULT_TOPIC", "SqlStore"]
