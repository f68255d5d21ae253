"""Write statements compiled once per dialect, executed with the DBAPI's ``executemany``.

SQLAlchemy Core's per-row parameter processing costs more than SQLite's own work at the batch
sizes of the write path, so each statement is compiled once and row tuples go straight to the
driver.  Upserts use each dialect's ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect


def _upsert_insert(dialect: Dialect) -> Any:
    return sqlite.insert if dialect.name == "sqlite" else postgresql.insert


class Statements:
    """Named statements, each with the column order of the row tuples it takes."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[str, tuple[str, Any]] = {}

    # ---- builders -------------------------------------------------------------------------------
    def insert(self, name: str, table: Table, columns: Sequence[str]) -> None:
        self._add(name, insert(table), columns)

    def upsert(self, name: str, table: Table, columns: Sequence[str], key: Sequence[str],
               keep: Sequence[str] = ()) -> None:
        """Insert, or update every column but ``key`` and ``keep`` on a key conflict."""
        stmt = _upsert_insert(self.dialect)(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in key],
            set_={c: stmt.excluded[c] for c in columns if c not in key and c not in keep},
        )
        self._add(name, stmt, columns)

    def add_to(self, name: str, table: Table, key: Sequence[str], measures: Sequence[str]) -> None:
        """Insert, or add ``measures`` to the stored ones on a key conflict (additive totals)."""
        stmt = _upsert_insert(self.dialect)(table)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c[k] for k in key],
                                          set_={m: table.c[m] + stmt.excluded[m] for m in measures})
        self._add(name, stmt, [*key, *measures])

    def insert_ignore(self, name: str, table: Table, columns: Sequence[str], key: Sequence[str]) -> None:
        stmt = _upsert_insert(self.dialect)(table).on_conflict_do_nothing(index_elements=[table.c[k] for k in key])
        self._add(name, stmt, columns)

    def update(self, name: str, table: Table, set_columns: Sequence[str], where: Sequence[str]) -> None:
        """``UPDATE table SET set_columns WHERE where`` from rows ``(*set values, *where values)``."""
        stmt = update(table).where(*[table.c[w] == bindparam(f"w_{w}") for w in where]).values(
            {c: bindparam(f"s_{c}") for c in set_columns})
        self._add(name, stmt, [f"s_{c}" for c in set_columns] + [f"w_{w}" for w in where])

    def record_change(self, name: str, changes: Table, ledger: Table) -> None:
        """``INSERT INTO changes (row_seq) SELECT seq FROM ledger WHERE date = ? AND event_id = ?``
        per event (its key: ``processors.runtime.contracts.EventKey``)."""
        stmt = insert(changes).from_select(
            ["row_seq"], select(ledger.c.seq).where(ledger.c.date == bindparam("w_date"),
                                                    ledger.c.event_id == bindparam("w_event_id")))
        self._add(name, stmt, ["w_date", "w_event_id"])

    def delete(self, name: str, table: Table, where: Sequence[str]) -> None:
        stmt = delete(table).where(*[table.c[w] == bindparam(f"w_{w}") for w in where])
        self._add(name, stmt, [f"w_{w}" for w in where])

    def _add(self, name: str, stmt: Any, keys: Sequence[str]) -> None:
        compiled = stmt.compile(dialect=self.dialect, column_keys=list(keys))
        sql = compiled.string
        defaults = compiled.params  # binds not fed by the rows (constants in the statement)
        if compiled.positional:
            names = [compiled.escaped_bind_names.get(n, n) for n in compiled.positiontup]
            if names == list(keys):
                self._compiled[name] = (sql, None)
            else:
                slots = [(keys.index(n), None) if n in keys else (-1, defaults[n]) for n in names]
                self._compiled[name] = (sql, slots)
        else:
            consts = {n: v for n, v in defaults.items() if n not in keys}
            self._compiled[name] = (sql, (list(keys), consts))

    # ---- execution ------------------------------------------------------------------------------
    def run(self, conn: Connection, name: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        sql, how = self._compiled[name]
        if how is None:
            params: Any = rows
        elif isinstance(how, list):
            params = [tuple(row[i] if i >= 0 else const for i, const in how) for row in rows]
        else:
            keys, consts = how
            params = [{**consts, **dict(zip(keys, row, strict=True))} for row in rows]
        conn.exec_driver_sql(sql, params)


class InQuery:
    """``SELECT ... WHERE (cols) IN (...)`` on the driver directly, chunked.

    SQLAlchemy's expanding ``IN`` re-processes every bound value on each execution, which cost more
    than the query itself at the write path's batch sizes (profile in docs/performance.md).  Row
    values go through ``IN (SELECT * FROM (VALUES ...))``, which SQLite and PostgreSQL both accept:
    SQLite plans a bare ``IN (VALUES ...)`` as a scan of the whole table (a payment group's load
    grew with the ledger: 85 ms per batch at 280k events), the sub-select as index searches (1-2 ms)."""

    def __init__(self, dialect: Dialect) -> None:
        self.mark = "?" if dialect.name == "sqlite" else "%s"

    def rows(self, conn: Connection, head: str, columns: Sequence[str], keys: Sequence[Any],
             tail: str = "", params: Sequence[Any] = (), chunk: int = 5000) -> Iterator[Any]:
        """Rows of ``{head} WHERE {tail}({columns}) IN (...)`` for every key (tuples when several
        columns); ``params`` bind the ``tail``'s own placeholders, written as ``{mark}``."""
        width = len(columns)
        tail = tail.format(mark=self.mark)
        if width == 1:
            lhs, one = columns[0], self.mark
        else:
            lhs, one = "(" + ", ".join(columns) + ")", "(" + ", ".join([self.mark] * width) + ")"
        per = max(1, chunk // width)
        for i in range(0, len(keys), per):
            part = keys[i:i + per]
            if width == 1:
                marks, flat = ", ".join([one] * len(part)), list(part)
                rhs = marks
            else:
                rhs = "SELECT * FROM (VALUES " + ", ".join([one] * len(part)) + ") AS _keys"  # noqa: S608 - placeholders only
                flat = [v for key in part for v in key]
            sql = f"{head} WHERE {tail}{lhs} IN ({rhs})"
            yield from conn.exec_driver_sql(sql, (*params, *flat)).fetchall()
