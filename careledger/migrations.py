"""Alembic histories of the tables that cannot be rebuilt from the log, and the one way to run them.

The read models are rebuilt by replay, but the key store (``keys.sqlite3``: wrapped data keys,
erasure tombstones) and the API's tables (tokens, audit log, webhook subscriptions and deliveries)
are the only copy of what they hold.  Their schema changes must therefore be migrations that keep
every row, each table set with its own history and version table:

* ``KEYSTORE`` - ``producers/keystore_migrations``, version table ``keystore_alembic_version``;
* ``API`` - ``projections/api_migrations``, version table ``api_alembic_version`` (same database
  as the read models, whose own history is ``projections_alembic_version``).

Why a runner of our own around ``alembic.command.upgrade``: several processes start at once on a
fresh home (two workers, the API, the deliverer, an import) and each upgrades the tables it uses.
The runner serialises them - a PostgreSQL advisory lock per history taken in the migration's own
transaction, an ``flock`` on a file next to a SQLite database - so the second process finds the
first one's version and does nothing.  Alembic's ``context``/``op`` are process-global, so one
process also runs one migration at a time (:data:`ALEMBIC_LOCK`).

The first revision of each history creates exactly the tables release ``dd36c12`` created, each
only if it is missing: a store made by that release (no version table) goes through the same
path as a new one and keeps its rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection, Engine

#: one Alembic run at a time per process (its context and ``op`` are module-global proxies)
ALEMBIC_LOCK = threading.RLock()

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class History:
    """One migration history: where its scripts are and which table records its version."""

    name: str
    directory: Path
    version_table: str

    @property
    def lock_key(self) -> int:
        return zlib.crc32(f"careledger-migrations:{self.name}".encode()) & 0x7FFFFFFF


KEYSTORE = History("keystore", REPO_ROOT / "producers" / "keystore_migrations", "keystore_alembic_version")
API = History("api", REPO_ROOT / "projections" / "api_migrations", "api_alembic_version")


def config(history: History, connection: Connection | None = None, **attributes: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(history.directory))
    cfg.attributes.update(attributes, history=history)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head(history: History) -> str:
    found = ScriptDirectory.from_config(config(history)).get_current_head()
    if found is None:  # pragma: no cover - every history has revisions
        raise RuntimeError(f"migration history {history.name} has no revision")
    return found


def current(engine: Engine, history: History) -> str | None:
    """The revision the database is at (None: never migrated - new, or made by release dd36c12)."""
    if not inspect(engine).has_table(history.version_table):
        return None
    with engine.connect() as conn:  # the table name is our own constant, never input
        return conn.exec_driver_sql(f"SELECT MAX(version_num) FROM {history.version_table}").scalar()  # noqa: S608


def upgrade(engine: Engine, history: History, **attributes: Any) -> None:
    """Bring ``engine``'s tables of ``history`` to the head revision (idempotent, concurrency-safe).
    ``attributes`` reach the revisions as ``context.config.attributes`` (e.g. a key a data
    migration needs)."""
    target = head(history)
    if current(engine, history) == target:
        return
    with ALEMBIC_LOCK, _sqlite_file_lock(engine, history), engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            with conn.begin():
                conn.execute(select(func.pg_advisory_xact_lock(history.lock_key)))
                command.upgrade(config(history, conn, **attributes), target)
        else:
            command.upgrade(config(history, conn, **attributes), target)
            if conn.in_transaction():
                conn.commit()


def run_env(context: EnvironmentContext) -> None:
    """The body of every history's ``env.py``: online only, on the connection :func:`upgrade` passes."""
    if context.is_offline_mode():  # pragma: no cover - offline SQL generation is not used
        raise SystemExit("offline migrations are not supported")
    cfg = context.config
    history: History = cfg.attributes["history"]
    connection = cfg.attributes.get("connection")
    if connection is None:  # pragma: no cover - developer tooling (alembic revision) only
        raise SystemExit(f"run migrations of {history.name} through careledger.migrations.upgrade")
    context.configure(connection=connection, version_table=history.version_table,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine, history: History) -> Iterator[None]:
    """Processes migrating one SQLite file take turns (``flock`` on ``<file>.<history>-migrations.lock``)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    fd = os.open(f"{database}.{history.name}-migrations.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
