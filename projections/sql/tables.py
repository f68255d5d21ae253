"""SQLAlchemy Core tables of the SQL read models (SQLite / PostgreSQL).

This module is the single ``MetaData`` of the SQL store.  The schema itself is created and
upgraded by the Alembic revisions in ``projections/sql/migrations`` (``SqlStore.migrate()``);
a new revision must accompany every change here.

Dates are ISO strings (``YYYY-MM-DD``; the event's calendar date in Asia/Shanghai) so that
range filters compare the same way on both dialects; ``occurred_at`` keeps the producer's
RFC 3339 text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

# SQLite only aliases rowid (autoincrement) for a column typed exactly INTEGER.
SEQ_TYPE = BigInteger().with_variant(Integer(), "sqlite")

VERSION_TABLE = "projections_alembic_version"

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("person_id", String(128), nullable=True),
    Column("town", String(128), nullable=False),
    Column("village", String(128), nullable=True),
    Column("date", String(10), nullable=False),
    Column("occurred_at", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Index("ix_events_person_id", "person_id"),
)

count_facts = Table(
    "count_facts",
    metadata,
    Column("kind", String(16), nullable=False),
    Column("key", String(64), nullable=False),
    Column("town", String(128), nullable=False),
    Column("date", String(10), nullable=False),
    Column("person_id", String(128), nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("positions", BigInteger, nullable=False),
    PrimaryKeyConstraint("kind", "key", "town", "date", "person_id", name="pk_count_facts"),
    Index("ix_count_facts_kind_date", "kind", "date"),
    Index("ix_count_facts_kind_key_date", "kind", "key", "date"),
    Index("ix_count_facts_kind_town_date", "kind", "town", "date"),
    sqlite_with_rowid=False,  # small rows clustered on the key: one b-tree less per upsert
)

persons = Table(
    "persons",
    metadata,
    Column("person_id", String(128), primary_key=True),
    Column("town", String(128), nullable=True),
    Column("village", String(128), nullable=True),
    Column("status", String(16), nullable=True),
    Column("category", String(32), nullable=True),
    Column("grade", Integer, nullable=True),
    Column("hardship", Boolean, nullable=True),
    Column("registered_on", String(10), nullable=True),
    Column("certificate_expires", String(10), nullable=True),
    Column("last_home_visit", String(10), nullable=True),
    Column("state", Text, nullable=False),
    Index("ix_persons_status_town", "status", "town"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(255), primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("person_id", String(128), nullable=False),
    Column("town", String(128), nullable=True),
    Column("status", String(16), nullable=False),
    Column("event_ids", Text, nullable=False),
    Column("detected_at", String(40), nullable=False),
    Column("detected_utc", String(32), nullable=False),  # sortable UTC key of detected_at
    Column("hazard", String(64), nullable=True),
    Column("program", String(64), nullable=True),
    Column("period", String(7), nullable=True),
    Column("acknowledged_by", String(128), nullable=True),
    Column("acknowledged_at", String(40), nullable=True),
    Column("resolved_by", String(128), nullable=True),
    Column("resolved_at", String(40), nullable=True),
    Column("updated_offset", BigInteger, nullable=True),
    Index("ix_alerts_rule", "rule"),
    Index("ix_alerts_person_id", "person_id"),
    Index("ix_alerts_status_detected", "status", "detected_utc"),
    Index("ix_alerts_town", "town"),
    Index("ix_alerts_detected", "detected_utc"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
    Column("alert_id", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("sent_at", String(40), nullable=True),
    Index("ix_alert_outbox_sent_seq", "sent_at", "seq"),
)

projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("projection", String(64), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    PrimaryKeyConstraint("projection", "topic", "partition", name="pk_projection_offsets"),
    sqlite_with_rowid=False,
)

READ_MODEL_TABLES = ("events", "count_facts", "persons", "alerts")
