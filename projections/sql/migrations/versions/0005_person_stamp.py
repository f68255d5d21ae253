"""``persons.stamp``: the earliest of a person's field stamps (the registration's), held once.

Each of the nine profile fields had its own stamp column, and the registration stamps them all
alike: nine copies of a ~64-character stamp were four fifths of a row (~0.8 KB), so the persons
table was as large as the ledger's two indexes together and each upsert or load touched a page
of about five persons (docs/performance.md, "The person row's stamps").  Now ``stamp`` holds the earliest of a
person's stamps and ``stamp_<field>`` is NULL for a field with that one, "" for a field with none,
and its own stamp otherwise (``projections/sql/rows.py``, ``pack_stamps``).

Every existing row is rewritten into that form here, so that stores upgraded and stores rebuilt
compare equal row for row.  The rule is written out below, not imported: a revision must keep
doing what it did when the code it was written with has moved on.

Revision ID: 0005_person_stamp
Revises: 0004_ledger_key_by_day
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_person_stamp"
down_revision: str | Sequence[str] | None = "0004_ledger_key_by_day"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("town", "village", "category", "grade", "birth_date", "hardship", "certificate_expires", "name", "phone")
CHUNK = 5_000


def packed(stamps: Sequence[str | None]) -> dict[str, str | None]:
    present = [s for s in stamps if s is not None]
    if not present:
        return {"stamp": None, **{f"stamp_{f}": None for f in FIELDS}}
    common = min(present)
    return {"stamp": common, **{f"stamp_{f}": None if s == common else "" if s is None else s
                                for f, s in zip(FIELDS, stamps, strict=True)}}


def upgrade() -> None:
    with op.batch_alter_table("persons") as batch:
        batch.add_column(sa.Column("stamp", sa.String(128), nullable=True))
    persons = sa.table("persons", sa.column("person_id"), sa.column("stamp"),
                       *(sa.column(f"stamp_{f}") for f in FIELDS))
    stamps = [persons.c[f"stamp_{f}"] for f in FIELDS]
    write = (persons.update().where(persons.c.person_id == sa.bindparam("pid"))
             .values({c: sa.bindparam(f"new_{c}") for c in ("stamp", *(f"stamp_{f}" for f in FIELDS))}))
    conn, after = op.get_bind(), ""
    while True:  # in chunks by key: a district's persons fit in memory, a nation's need not
        rows = conn.execute(sa.select(persons.c.person_id, *stamps).where(persons.c.person_id > after)
                            .order_by(persons.c.person_id).limit(CHUNK)).all()
        if not rows:
            return
        conn.execute(write, [{"pid": pid, **{f"new_{k}": v for k, v in packed(rest).items()}}
                             for pid, *rest in rows])
        after = rows[-1][0]


def downgrade() -> None:  # pragma: no cover - the read model is rebuilt from the log instead
    raise NotImplementedError("drop the store and let the worker rebuild it from the log")
