"""The key store as release dd36c12 created it (``create_all`` of its metadata, no version table).

Each table is created only if it is missing, so a key store made by that release takes this same
path and keeps every row; a new one gets the same tables.

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
    if "person_keys" not in present:
        op.create_table(
            "person_keys",
            sa.Column("person_id", sa.String(128), primary_key=True),
            sa.Column("kid", sa.String(64), nullable=False),
            sa.Column("wrapped", sa.Text, nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
        )
    if "tombstones" not in present:
        op.create_table(
            "tombstones",
            sa.Column("person_id", sa.String(128), primary_key=True),
            sa.Column("tombstone_id", sa.String(64), nullable=False, unique=True),
            sa.Column("forgotten_at", sa.String(40), nullable=False),
        )
    if "keystore_meta" not in present:
        op.create_table(
            "keystore_meta",
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("value", sa.String(64), nullable=False),
        )


def downgrade() -> None:
    raise NotImplementedError("the key store is never downgraded: it holds the only copy of its keys")
