"""``alert_outbox.traceparent``: the W3C trace context of the event that caused each change.

Nullable: rows written before this revision, and those no event caused (the daily warning sweep,
escalations), have none; the relay then starts a trace of its own (careledger/tracing.py).

Revision ID: 0003_outbox_traceparent
Revises: 0002_ledger
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_outbox_traceparent"
down_revision: str | Sequence[str] | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:  # pragma: no cover - the read model is rebuilt from the log instead
    raise NotImplementedError("drop the store and let the worker rebuild it from the log")
