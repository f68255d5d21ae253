"""Positions in a SQL store: ``{partition: last applied offset}`` per projection and topic, read and
written inside the batch's transaction (the read model and its positions commit together)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Engine

from processors.runtime.contracts import Positions
from projections.sql.statements import Statements


class SqlPositions:
    """The rows of one positions table (columns projection, topic, partition, offset) for one
    projection name and topic."""

    def __init__(self, table: Table, projection: str, topic: str, statements: Statements) -> None:
        self.table = table
        self.projection = projection
        self.topic = topic
        self._statements = statements
        statements.upsert("positions", table, ("projection", "topic", "partition", "offset"),
                          ("projection", "topic", "partition"))

    def read(self, conn: Connection, partitions: Iterable[int] | None = None) -> Positions:
        c = self.table.c
        stmt = select(c.partition, c.offset).where(c.projection == self.projection, c.topic == self.topic,
                                                   c.partition >= 0)
        if partitions is not None:
            stmt = stmt.where(c.partition.in_(sorted(partitions)))
        return {int(p): int(o) for p, o in conn.execute(stmt).all()}

    def read_all(self, engine: Engine) -> Positions:
        with engine.connect() as conn:
            return self.read(conn)

    def write(self, conn: Connection, positions: Positions) -> None:
        self._statements.run(conn, "positions", [(self.projection, self.topic, p, o)
                                                 for p, o in sorted(positions.items())])
