"""Create tables that several processes may be creating at the same moment.

Why: on a fresh home the worker, the API and an import can start together, and each creates the
tables it owns (key store, tokens and audit log, example projections).  ``create_all`` checks and
then creates, so a second process can fail with "table already exists" (SQLite) or a duplicate
type (PostgreSQL) between the two.  Retrying is enough: the next ``checkfirst`` sees the tables
the other process made.  A real error (disk full, no permission) fails every attempt and is raised.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

CREATE_ATTEMPTS = 5
CREATE_BACKOFF_S = 0.05


def create_tables(engine: Engine, metadata: MetaData, tables: Sequence[Table] | None = None) -> None:
    """``metadata.create_all`` that tolerates other processes creating the same tables."""
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            metadata.create_all(engine, tables=tables, checkfirst=True)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(CREATE_BACKOFF_S * attempt)
