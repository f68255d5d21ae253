"""``audit_archives``: every archive ``careledger audit archive`` made - the day before which its
rows were written, the file, how many rows and the file's SHA-256 - so that ``/api/audit`` and the
person page can say that older reads are archived, and ``careledger audit search`` finds the files.
A new table: every existing row is kept; archives made before this revision are not listed.

Revision ID: 0004_audit_archives
Revises: 0003_audit_subjects
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_audit_archives"
down_revision: str | Sequence[str] | None = "0003_audit_subjects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_archives",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("before", sa.String(10), nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("made_by", sa.String(128), nullable=True),
    )


def downgrade() -> None:
    raise NotImplementedError("the API's tables are never downgraded: they hold the only copy of their rows")
