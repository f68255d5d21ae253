"""Initial read-model schema: events, count_facts, persons, alerts, alert_outbox, projection_offsets.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=True),
        sa.Column("town", sa.String(128), nullable=False),
        sa.Column("village", sa.String(128), nullable=True),
        sa.Column("date", sa.String(10), nullable=False),
        sa.Column("occurred_at", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_events_person_id", "events", ["person_id"])

    op.create_table(
        "count_facts",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("town", sa.String(128), nullable=False),
        sa.Column("date", sa.String(10), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("positions", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", "town", "date", "person_id", name="pk_count_facts"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_count_facts_kind_date", "count_facts", ["kind", "date"])
    op.create_index("ix_count_facts_kind_key_date", "count_facts", ["kind", "key", "date"])
    op.create_index("ix_count_facts_kind_town_date", "count_facts", ["kind", "town", "date"])

    op.create_table(
        "persons",
        sa.Column("person_id", sa.String(128), primary_key=True),
        sa.Column("town", sa.String(128), nullable=True),
        sa.Column("village", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("grade", sa.Integer, nullable=True),
        sa.Column("hardship", sa.Boolean, nullable=True),
        sa.Column("registered_on", sa.String(10), nullable=True),
        sa.Column("certificate_expires", sa.String(10), nullable=True),
        sa.Column("last_home_visit", sa.String(10), nullable=True),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_index("ix_persons_status_town", "persons", ["status", "town"])

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
        sa.Column("updated_offset", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_alerts_rule", "alerts", ["rule"])
    op.create_index("ix_alerts_person_id", "alerts", ["person_id"])
    op.create_index("ix_alerts_status_detected", "alerts", ["status", "detected_utc"])
    op.create_index("ix_alerts_town", "alerts", ["town"])
    op.create_index("ix_alerts_detected", "alerts", ["detected_utc"])

    op.create_table(
        "alert_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("alert_id", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("sent_at", sa.String(40), nullable=True),
    )
    op.create_index("ix_alert_outbox_sent_seq", "alert_outbox", ["sent_at", "seq"])

    op.create_table(
        "projection_offsets",
        sa.Column("projection", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("projection", "topic", "partition", name="pk_projection_offsets"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    for name in ("projection_offsets", "alert_outbox", "alerts", "persons", "count_facts", "events"):
        op.drop_table(name)
