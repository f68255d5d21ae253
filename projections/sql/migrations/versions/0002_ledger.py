"""Engine v2 read model: ledger + fixed-size person cores instead of events/count_facts/JSON states.

The read model is rebuilt from the log: this revision drops the old read-model tables and the
positions (the worker then starts from offset 0 by itself), keeping those positions in
``replayed_until`` so that the rebuild marks alert changes up to them as already published.
``alert_outbox`` is kept (its sequence numbers are the SSE stream's ``Last-Event-ID``).

Revision ID: 0002_ledger
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledger"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PROFILE = ("town", "village", "category", "grade", "birth_date", "hardship", "certificate_expires", "name", "phone")


def upgrade() -> None:
    op.create_table(
        "replayed_until",
        sa.Column("projection", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("projection", "topic", "partition", name="pk_replayed_until"),
        sqlite_with_rowid=False,
    )
    op.execute("INSERT INTO replayed_until (projection, topic, \"partition\", \"offset\") "
               "SELECT projection, topic, \"partition\", \"offset\" FROM projection_offsets WHERE \"partition\" >= 0")
    op.execute("DELETE FROM projection_offsets")
    for name in ("events", "count_facts", "persons", "alerts"):
        op.drop_table(name)

    op.create_table(
        "ledger",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("town", sa.String(128), nullable=False),
        sa.Column("date", sa.String(10), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("period", sa.String(7), nullable=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("positions", sa.BigInteger, nullable=False),
        sa.Column("counted", sa.SmallInteger, nullable=False),
        sa.Column("reversed_by", sa.String(64), nullable=True),
        sa.Column("occurred_at", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
    )
    op.create_index("ux_ledger_event_id", "ledger", ["event_id"], unique=True)
    op.create_index("ix_ledger_person_key_period", "ledger", ["person_id", "key", "period"])

    op.create_table(
        "ledger_changes",
        sa.Column("change_seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("row_seq", sa.BigInteger, nullable=False),
    )

    op.create_table(
        "persons",
        sa.Column("person_id", sa.String(128), primary_key=True),
        sa.Column("town", sa.String(128), nullable=True),
        sa.Column("village", sa.String(128), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("grade", sa.Integer, nullable=True),
        sa.Column("birth_date", sa.String(10), nullable=True),
        sa.Column("hardship", sa.Boolean, nullable=True),
        sa.Column("certificate_expires", sa.String(10), nullable=True),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        *[sa.Column(f"stamp_{name}", sa.String(128), nullable=True) for name in PROFILE],
        sa.Column("registered_on", sa.String(10), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("status_effective", sa.String(10), nullable=True),
        sa.Column("status_stamp", sa.String(160), nullable=True),
        sa.Column("end_date", sa.String(10), nullable=True),
        sa.Column("end_event_id", sa.String(64), nullable=True),
        sa.Column("end_occurred_at", sa.String(40), nullable=True),
        sa.Column("last_home_visit", sa.String(10), nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_persons_status_town", "persons", ["status", "town"])

    op.create_table(
        "needs",
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("need_id", sa.String(64), nullable=False),
        sa.Column("need", sa.String(32), nullable=True),
        sa.Column("registered_on", sa.String(10), nullable=True),
        sa.Column("registered_by", sa.String(64), nullable=True),
        sa.Column("fulfilled_on", sa.String(10), nullable=True),
        sa.Column("fulfilled_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("person_id", "need_id", name="pk_needs"),
        sqlite_with_rowid=False,
    )

    op.create_table(
        "pending_reversals",
        sa.Column("payment_id", sa.String(64), primary_key=True),
        sa.Column("reversal_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_pending_reversals_person", "pending_reversals", ["person_id"])

    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(255), primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("town", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("event_ids", sa.Text, nullable=False),
        sa.Column("detected_at", sa.String(40), nullable=False),
        sa.Column("detected_utc", sa.String(32), nullable=False),
        sa.Column("hazard", sa.String(64), nullable=True),
        sa.Column("program", sa.String(64), nullable=True),
        sa.Column("period", sa.String(7), nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", sa.String(40), nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolved_at", sa.String(40), nullable=True),
        sa.Column("assigned_to", sa.String(200), nullable=True),
        sa.Column("assigned_at", sa.String(40), nullable=True),
        sa.Column("raised_at", sa.String(40), nullable=True),
        sa.Column("escalated_at", sa.String(40), nullable=True),
        sa.Column("updated_offset", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_alerts_rule", "alerts", ["rule"])
    op.create_index("ix_alerts_person_id", "alerts", ["person_id"])
    op.create_index("ix_alerts_status_detected", "alerts", ["status", "detected_utc"])
    op.create_index("ix_alerts_detected", "alerts", ["detected_utc"])

    op.create_table(
        "alert_actions",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("alert_id", sa.String(255), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("assignee", sa.String(200), nullable=True),
    )
    op.create_index("ix_alert_actions_alert", "alert_actions", ["alert_id"])

    op.create_table(
        "warning_snoozes",
        sa.Column("warning_id", sa.String(32), primary_key=True),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("until", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_warning_snoozes_person", "warning_snoozes", ["person_id"])

    op.create_table(
        "warning_notices",
        sa.Column("warning_id", sa.String(32), primary_key=True),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("due_at", sa.String(40), nullable=False),
        sa.Column("cleared_at", sa.String(40), nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_warning_notices_person", "warning_notices", ["person_id"])
    op.create_index("ix_warning_notices_state", "warning_notices", ["state"])

    with op.batch_alter_table("alert_outbox") as batch:
        batch.add_column(sa.Column("channel", sa.String(8), nullable=False, server_default="alert"))

    op.create_table(
        "warnings",
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("since", sa.String(10), nullable=False),
        sa.Column("need", sa.String(32), nullable=True),
        sa.Column("detail", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("person_id", "rule", "subject", name="pk_warnings"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_warnings_since", "warnings", ["since"])


def downgrade() -> None:  # pragma: no cover - the read model is rebuilt from the log instead
    raise NotImplementedError("drop the store and let the worker rebuild it from the log")
