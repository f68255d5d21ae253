"""The read model's Alembic history (``projections/sql/migrations``) builds exactly the tables of
``projections/sql/tables.py``, and its revisions carry a store's rows over: here revision 0005,
which holds the stamp most of a person's fields share once.  The PostgreSQL run of the same checks
is in ``tests/integration/test_sql_store_pg.py``."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column, create_engine, insert, select, table

from processors.domain.rules_config import default_rules
from projections.sql import tables as t
from projections.sql.migrate import upgrade
from projections.sql.rows import PERSON_COLUMNS, person_from_row
from projections.sql.store import SqlStore

A = "2020-01-01T00:00:00.000000Z|r1"  # a registration's stamp
B = "2024-03-01T00:00:00.000000Z|u1"  # a later change of town and village
#: person -> the stamp_<field> columns as revision 0004 wrote them (one stamp per field, NULL: none)
BEFORE = {
    "p-registered": dict.fromkeys(t.PROFILE_COLUMNS, A),
    "p-moved": {**dict.fromkeys(t.PROFILE_COLUMNS, A), "town": B, "village": B},
    "p-paid-only": dict.fromkeys(t.PROFILE_COLUMNS),
    "p-no-phone": {**dict.fromkeys(t.PROFILE_COLUMNS, A), "name": None, "phone": None},
}
MANY = 5_003  # more persons than the revision rewrites at once


def schema_differences(url: str) -> list[object]:
    store = SqlStore(url, default_rules())
    store.migrate()
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), t.metadata)
    store.close()
    return [d for d in diffs if not (d[0] == "remove_table" and d[1].name == t.VERSION_TABLE)]


def check_person_stamps_upgrade(url: str) -> None:
    """Rows written by revision 0004 (nine stamps each) load back with the same stamps after the
    upgrade, each row holding the shared one once."""
    engine = create_engine(url)
    with engine.begin() as conn:
        upgrade(conn, "0004_ledger_key_by_day")
        old = table("persons", *(column(c) for c in ("person_id", *(f"stamp_{n}" for n in t.PROFILE_COLUMNS))))
        rows = [{"person_id": p, **{f"stamp_{n}": s for n, s in stamps.items()}} for p, stamps in BEFORE.items()]
        rows += [{"person_id": f"p-{i:05d}", **{f"stamp_{n}": A for n in t.PROFILE_COLUMNS}} for i in range(MANY)]
        conn.execute(insert(old), rows)
    engine.dispose()
    store = SqlStore(url, default_rules())
    store.migrate()
    with store.engine.connect() as conn:
        loaded = {r[0]: (r, person_from_row(r)) for r in conn.execute(
            select(*(t.persons.c[c] for c in PERSON_COLUMNS)))}
    store.close()
    assert len(loaded) == len(BEFORE) + MANY
    for person, stamps in BEFORE.items():
        assert loaded[person][1].profile_stamps == {n: s for n, s in stamps.items() if s is not None}, person
    row = dict(zip(PERSON_COLUMNS, loaded["p-moved"][0], strict=True))
    assert row["stamp"] == A and (row["stamp_town"], row["stamp_village"], row["stamp_grade"]) == (B, B, None)
    assert all(r[1].profile_stamps == dict.fromkeys(t.PROFILE_COLUMNS, A)
               for p, r in loaded.items() if p not in BEFORE)
    first = PERSON_COLUMNS.index("stamp")
    held = sum(v is not None for r, _ in loaded.values() for v in r[first:first + len(t.STAMP_COLUMNS)])
    # the MANY and p-registered: A once; p-moved: A, B, B; p-paid-only: none; p-no-phone: A, "", ""
    assert held == MANY + 1 + 3 + 0 + 3


def test_the_migrations_build_the_tables_of_the_code(tmp_path: Path) -> None:
    assert schema_differences(f"sqlite:///{tmp_path / 'schema.sqlite3'}") == []


def test_person_rows_of_revision_4_hold_their_shared_stamp_once_after_the_upgrade(tmp_path: Path) -> None:
    check_person_stamps_upgrade(f"sqlite:///{tmp_path / 'old.sqlite3'}")
