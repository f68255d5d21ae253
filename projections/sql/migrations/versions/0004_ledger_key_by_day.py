"""The ledger's de-duplication key becomes ``(date, event_id)``: an event's id within its day.

The unique index on ``event_id`` alone took a random place for every new event, so each batch's
commit wrote about one page of it per event (a fifth to a third of the applier's time at a
million events: docs/performance.md, "Which pages a commit writes"); new events share few days,
so under ``(date, event_id)`` they go near the end of the index.  No row changes: a store whose
``event_id`` was unique has unique ``(date, event_id)`` too.

Revision ID: 0004_ledger_key_by_day
Revises: 0003_outbox_traceparent
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_ledger_key_by_day"
down_revision: str | Sequence[str] | None = "0003_outbox_traceparent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ux_ledger_date_event_id", "ledger", ["date", "event_id"], unique=True)
    op.drop_index("ux_ledger_event_id", table_name="ledger")


def downgrade() -> None:  # pragma: no cover - the read model is rebuilt from the log instead
    raise NotImplementedError("drop the store and let the worker rebuild it from the log")
