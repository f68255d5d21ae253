"""Tombstones no longer link an erased person's rows back to them (issue 15.11).

Release dd36c12 kept ``tombstones(person_id, tombstone_id, forgotten_at)``: anyone reading the key
store could map the tombstone id that the projections' erased rows carry back to the person's
pseudonym.  Now the table holds only ``person_digest`` - a keyed hash of the pseudonym (the key is
derived from the master key, ``producers/keystore.py``), enough to refuse and erase that person's
events - and ``forgotten_at``; the tombstone id is derived from the pseudonym with another keyed
hash when an event of the person is read, and stored nowhere.

Every forgotten person stays forgotten.  The random tombstone ids of erasures made before this
release stay in the live projections (they are unlinked now); a replay writes those persons' rows
under the derived ids instead, with the same counts.

Revision ID: 0002_unlinkable_tombstones
Revises: 0001_release_dd36c12
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002_unlinkable_tombstones"
down_revision: str | Sequence[str] | None = "0001_release_dd36c12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if "person_digest" in {c["name"] for c in sa.inspect(bind).get_columns("tombstones")}:
        return  # made by this release's own table definitions (a restore's copy): nothing to convert
    legacy = sa.table("tombstones", sa.column("person_id", sa.String), sa.column("forgotten_at", sa.String))
    rows = bind.execute(sa.select(legacy.c.person_id, legacy.c.forgotten_at)).all()
    digest = context.config.attributes.get("forgotten_digest")
    if rows and digest is None:
        raise RuntimeError("upgrading the key store's tombstones needs the master key (open it with KeyStore)")
    op.create_table(
        "tombstones_v2",
        sa.Column("person_digest", sa.String(64), primary_key=True),
        sa.Column("forgotten_at", sa.String(40), nullable=False),
    )
    if rows:
        new = sa.table("tombstones_v2", sa.column("person_digest", sa.String), sa.column("forgotten_at", sa.String))
        bind.execute(sa.insert(new), [{"person_digest": digest(pid), "forgotten_at": at} for pid, at in rows])
    op.drop_table("tombstones")
    op.rename_table("tombstones_v2", "tombstones")


def downgrade() -> None:
    raise NotImplementedError("a tombstone's link to the person is gone for good; that is the point")
