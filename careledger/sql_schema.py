"""Create tables that several processes may be creating at the same moment.

Why: on a fresh home the worker, the API and an import can start together, and each creates the
tables it owns (example projections; the key store and API tables go through their Alembic
histories, ``careledger/migrations.py``).  ``create_all`` checks and then creates, so a second
process can fail with "table already exists" (SQLite) or a duplicate type (PostgreSQL) between the
two.  Retrying is enough: the next ``checkfirst`` sees the tables the other process made.  A real
error (disk full, no permission) fails every attempt and is raised.  The retry policy is the
project's one (``careledger/retrying.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Engine

from careledger.retrying import call_retrying, is_concurrent_ddl

CREATE_ATTEMPTS = 5
CREATE_BACKOFF_S = 0.05
CREATE_BACKOFF_MAX_S = 1.0


def create_tables(engine: Engine, metadata: MetaData, tables: Sequence[Table] | None = None) -> None:
    """``metadata.create_all`` that tolerates other processes creating the same tables."""
    call_retrying(lambda: metadata.create_all(engine, tables=tables, checkfirst=True),
                  f"creating tables on {engine.dialect.name}", transient=is_concurrent_ddl,
                  attempts=CREATE_ATTEMPTS, first_s=CREATE_BACKOFF_S, max_s=CREATE_BACKOFF_MAX_S,
                  level=logging.INFO)
