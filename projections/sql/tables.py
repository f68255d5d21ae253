"""SQLAlchemy Core tables of the SQL read model (SQLite / PostgreSQL).

This module is the single ``MetaData`` of the read model.  The schema is created and upgraded
by the Alembic revisions in ``projections/sql/migrations`` (``SqlStore.migrate()``); a new
revision must accompany every change here.

Why these tables (docs/architecture.md, "The SQL read model"):

* ``ledger`` - one row per event: the count fact it contributes (``kind``/``key``/``town``/
  ``date``/``person_id``, ``counted``), the de-duplication key (``date``, ``event_id``: an event's
  id within its day, so that a batch of new events adds its keys near the end of that index and
  its commit writes a few of the index's pages, not one per event - docs/performance.md, "Which
  pages a commit writes"), what the payment rules need later (``period``, ``amount_fen``,
  ``reversed_by``) and the payload for a person's timeline.  Its index on (person, key, period)
  is how a payment group is loaded, and how a reversal finds the payment it names (a payment of
  the same person, as the contract says);
* ``persons`` - the fixed-size core of each person (profile with its stamps, status, end date,
  registration, last home visit): its size never grows with history.  The earliest of its
  field stamps (the registration's, which most fields keep) is held once in ``stamp``: nine
  copies of it made four fifths of a row's ~0.8 KB (docs/performance.md, "The person row's stamps");
* ``needs``, ``pending_reversals``, ``alerts`` - one row per need, per reversal that arrived
  before its payment, per alert;
* ``warnings`` - the standing need warnings with the first day each is due;
* ``alert_outbox`` - alert changes to publish (written in the batch's transaction);
* ``projection_offsets`` - positions, written in the same transaction as all of the above.

Dates are ISO strings (``YYYY-MM-DD``; the event's calendar date in Asia/Shanghai) so that range
filters compare the same way on both dialects; ``occurred_at`` keeps the producer's RFC 3339 text.
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
    SmallInteger,
    String,
    Table,
    Text,
)

from processors.domain.aggregate import PROFILE_FIELDS

# SQLite only aliases rowid (autoincrement) for a column typed exactly INTEGER.
SEQ_TYPE = BigInteger().with_variant(Integer(), "sqlite")

VERSION_TABLE = "projections_alembic_version"

#: the profile fields of a person, each with a ``stamp_<field>`` column (latest stamp wins): the
#: aggregate's own list, in its order (``rows.person_from_row`` builds the aggregate positionally)
PROFILE_COLUMNS: tuple[str, ...] = PROFILE_FIELDS

#: a person's stamp columns: ``stamp`` (the earliest of the profile's stamps, held once) and one per
#: field (NULL: the field has that stamp; "": it has none; else its own) - ``rows.pack_stamps``
STAMP_COLUMNS: tuple[str, ...] = ("stamp", *(f"stamp_{name}" for name in PROFILE_COLUMNS))

metadata = MetaData()

ledger = Table(
    "ledger",
    metadata,
    Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("kind", String(16), nullable=True),  # None: the type is not counted
    Column("key", String(64), nullable=False),
    Column("town", String(128), nullable=False),
    Column("date", String(10), nullable=False),
    Column("person_id", String(128), nullable=False),  # "" for job.posted
    Column("period", String(7), nullable=True),
    Column("amount_fen", BigInteger, nullable=False),
    Column("positions", BigInteger, nullable=False),
    Column("counted", SmallInteger, nullable=False),  # 1: in /api/counts (0 once reversed)
    Column("reversed_by", String(64), nullable=True),
    Column("occurred_at", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Index("ux_ledger_date_event_id", "date", "event_id", unique=True),
    Index("ix_ledger_person_key_period", "person_id", "key", "period"),
)

#: ledger rows changed after they were written (a reversal stops a payment counting, erasure moves
#: rows to a tombstone), in order: how the read API's in-memory counts index stays exact
ledger_changes = Table(
    "ledger_changes",
    metadata,
    Column("change_seq", SEQ_TYPE, primary_key=True, autoincrement=True),
    Column("row_seq", BigInteger, nullable=False),
)

persons = Table(
    "persons",
    metadata,
    Column("person_id", String(128), primary_key=True),
    Column("town", String(128), nullable=True),
    Column("village", String(128), nullable=True),
    Column("category", String(32), nullable=True),
    Column("grade", Integer, nullable=True),
    Column("birth_date", String(10), nullable=True),
    Column("hardship", Boolean, nullable=True),
    Column("certificate_expires", String(10), nullable=True),
    Column("name", String(64), nullable=True),
    Column("phone", String(32), nullable=True),
    *[Column(f"stamp_{name}", String(128), nullable=True) for name in PROFILE_COLUMNS],
    Column("registered_on", String(10), nullable=True),
    Column("status", String(16), nullable=True),
    Column("status_effective", String(10), nullable=True),
    Column("status_stamp", String(160), nullable=True),
    Column("end_date", String(10), nullable=True),
    Column("end_event_id", String(64), nullable=True),
    Column("end_occurred_at", String(40), nullable=True),
    Column("last_home_visit", String(10), nullable=True),
    Column("stamp", String(128), nullable=True),  # revision 0005: see STAMP_COLUMNS
    Index("ix_persons_status_town", "status", "town"),
    sqlite_with_rowid=False,
)

needs = Table(
    "needs",
    metadata,
    Column("person_id", String(128), nullable=False),
    Column("need_id", String(64), nullable=False),
    Column("need", String(32), nullable=True),
    Column("registered_on", String(10), nullable=True),
    Column("registered_by", String(64), nullable=True),
    Column("fulfilled_on", String(10), nullable=True),
    Column("fulfilled_by", String(64), nullable=True),
    PrimaryKeyConstraint("person_id", "need_id", name="pk_needs"),
    sqlite_with_rowid=False,
)

pending_reversals = Table(
    "pending_reversals",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("reversal_id", String(64), nullable=False),
    Column("person_id", String(128), nullable=False),
    Index("ix_pending_reversals_person", "person_id"),
    sqlite_with_rowid=False,
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
    Column("assigned_to", String(200), nullable=True),
    Column("assigned_at", String(40), nullable=True),
    Column("raised_at", String(40), nullable=True),  # wall clock when this store first raised it
    Column("escalated_at", String(40), nullable=True),  # when it was published again as overdue
    Column("updated_offset", BigInteger, nullable=True),
    Index("ix_alerts_rule", "rule"),
    Index("ix_alerts_person_id", "person_id"),
    Index("ix_alerts_status_detected", "status", "detected_utc"),
    Index("ix_alerts_detected", "detected_utc"),
)

#: every action people took on an alert (alert.handled events), oldest first: the person page's history
alert_actions = Table(
    "alert_actions",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("alert_id", String(255), nullable=False),
    Column("action", String(16), nullable=False),
    Column("by", String(200), nullable=False),
    Column("at", String(40), nullable=False),
    Column("note", Text, nullable=True),
    Column("assignee", String(200), nullable=True),
    Index("ix_alert_actions_alert", "alert_id"),
)

#: need warnings put aside until a date (warning.snoozed events)
warning_snoozes = Table(
    "warning_snoozes",
    metadata,
    Column("warning_id", String(32), primary_key=True),
    Column("person_id", String(128), nullable=False),
    Column("until", String(10), nullable=False),
    Column("reason", String(255), nullable=False),
    Column("by", String(200), nullable=False),
    Column("at", String(40), nullable=False),
    Index("ix_warning_snoozes_person", "person_id"),
    sqlite_with_rowid=False,
)

#: which warnings were published to subscribers as due (and later as cleared): a restart or a
#: replay never publishes one twice
warning_notices = Table(
    "warning_notices",
    metadata,
    Column("warning_id", String(32), primary_key=True),
    Column("person_id", String(128), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("state", String(8), nullable=False),  # "due" | "cleared"
    Column("due_at", String(40), nullable=False),
    Column("cleared_at", String(40), nullable=True),
    Index("ix_warning_notices_person", "person_id"),
    Index("ix_warning_notices_state", "state"),
    sqlite_with_rowid=False,
)

warnings = Table(
    "warnings",
    metadata,
    Column("person_id", String(128), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("subject", String(64), nullable=False),  # the need_id for need_unmet, else ""
    Column("since", String(10), nullable=False),  # the first day the warning is due
    Column("need", String(32), nullable=True),
    Column("detail", String(255), nullable=True),
    PrimaryKeyConstraint("person_id", "rule", "subject", name="pk_warnings"),
    Index("ix_warnings_since", "since"),
    sqlite_with_rowid=False,
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
    Column("alert_id", String(255), nullable=False),  # or the warning_id (channel "warning")
    Column("channel", String(8), nullable=False, server_default="alert"),  # "alert" | "warning"
    Column("body", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("sent_at", String(40), nullable=True),
    # W3C trace context of the change (careledger/tracing.py): a span of the trace of the event that
    # caused it; None for changes no event caused (sweep, escalation) and rows of older releases
    Column("traceparent", String(55), nullable=True),
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

#: positions an older schema had applied when it was upgraded (revision 0002): the rebuild that
#: follows marks alert changes up to them as already published, so subscribers get no repeats
replayed_until = Table(
    "replayed_until",
    metadata,
    Column("projection", String(64), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    PrimaryKeyConstraint("projection", "topic", "partition", name="pk_replayed_until"),
    sqlite_with_rowid=False,
)

READ_MODEL_TABLES = ("ledger", "persons", "needs", "pending_reversals", "alerts", "warnings")
