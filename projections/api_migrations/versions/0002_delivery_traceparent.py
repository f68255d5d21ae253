"""``webhook_deliveries.traceparent``: the W3C trace context of the careledger.alerts or
careledger.warnings message a delivery came from; every POST of the delivery is a child span of it
(careledger/tracing.py).  Nullable: deliveries stored before this revision have none, and their
POSTs start a trace of their own.  Every existing row is kept.

Revision ID: 0002_delivery_traceparent
Revises: 0001_release_dd36c12
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_delivery_traceparent"
down_revision: str | Sequence[str] | None = "0001_release_dd36c12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the API's tables are never downgraded: they hold the only copy of their rows")
