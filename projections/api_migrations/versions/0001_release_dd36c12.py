"""The read API's tables as release dd36c12 created them (``create_all``, no version table):
``api_tokens`` and ``audit_log`` (projections/api/auth.py), ``webhook_subscriptions`` and
``webhook_deliveries`` (projections/api/subscriptions.py).

Each table (and its indexes) is created only if it is missing, so a database made by that release -
where the webhook tables may not exist yet, they were created on first use - takes this same path
and keeps every row.

Revision ID: 0001_release_dd36c12
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_release_dd36c12"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "api_tokens" not in present:
        op.create_table(
            "api_tokens",
            sa.Column("token_hash", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("towns", sa.JSON, nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("revoked_at", sa.String(40), nullable=True),
        )
        op.create_index("ix_api_tokens_name", "api_tokens", ["name"])
    if "audit_log" not in present:
        op.create_table(
            "audit_log",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                      autoincrement=True),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("token_name", sa.String(128), nullable=True),
            sa.Column("role", sa.String(16), nullable=True),
            sa.Column("method", sa.String(8), nullable=False),
            sa.Column("path", sa.String(512), nullable=False),
            sa.Column("query", sa.Text, nullable=True),
            sa.Column("person_id", sa.String(128), nullable=True),
            sa.Column("status", sa.Integer, nullable=False),
        )
        op.create_index("ix_audit_log_at", "audit_log", ["at"])
        op.create_index("ix_audit_log_person_id", "audit_log", ["person_id"])
    if "webhook_subscriptions" not in present:
        op.create_table(
            "webhook_subscriptions",
            sa.Column("subscription_id", sa.String(40), primary_key=True),
            sa.Column("url", sa.String(2048), nullable=False),
            sa.Column("rules", sa.JSON, nullable=True),
            sa.Column("towns", sa.JSON, nullable=True),
            sa.Column("description", sa.String(256), nullable=True),
            sa.Column("secret_enc", sa.Text, nullable=False),
            sa.Column("secret_fingerprint", sa.String(16), nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("created_by", sa.String(128), nullable=True),
            sa.Column("deleted_at", sa.String(40), nullable=True),
            sa.Column("start_after_seq", sa.BigInteger, nullable=False),
        )
    if "webhook_deliveries" not in present:
        op.create_table(
            "webhook_deliveries",
            sa.Column("delivery_id", sa.String(40), primary_key=True),
            sa.Column("subscription_id", sa.String(40), nullable=False),
            sa.Column("alert_id", sa.String(255), nullable=False),
            sa.Column("outbox_seq", sa.BigInteger, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("last_error", sa.Text, nullable=True),
            sa.Column("last_status", sa.Integer, nullable=True),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("next_attempt_at", sa.String(40), nullable=True),
            sa.Column("lease_until", sa.String(40), nullable=True),
            sa.Column("delivered_at", sa.String(40), nullable=True),
        )
        op.create_index("ix_webhook_deliveries_due", "webhook_deliveries",
                        ["subscription_id", "status", "next_attempt_at"])
        op.create_index("ix_webhook_deliveries_sub_seq", "webhook_deliveries", ["subscription_id", "outbox_seq"])


def downgrade() -> None:
    raise NotImplementedError("the API's tables are never downgraded: they hold the only copy of their rows")
