"""``audit_subjects``: the persons a list or a stream showed, one row each under the request's
``audit_log`` row, so that ``/api/audit?person_id=`` finds list reads too (before, a list of alerts
was audited once, naming nobody).  A new table: every existing row is kept; rows written before
this revision name only the person their URL named.

Revision ID: 0003_audit_subjects
Revises: 0002_delivery_traceparent
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_audit_subjects"
down_revision: str | Sequence[str] | None = "0002_delivery_traceparent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_subjects",
        sa.Column("person_id", sa.String(128), primary_key=True),
        sa.Column("audit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    )
    op.create_index("ix_audit_subjects_audit_id", "audit_subjects", ["audit_id"])


def downgrade() -> None:
    raise NotImplementedError("the API's tables are never downgraded: they hold the only copy of their rows")
