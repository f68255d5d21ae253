"""Run the SQL store's Alembic migrations in code (no alembic.ini at the repository root).

``upgrade(connection)`` is what ``SqlStore.migrate()`` calls.  For development::

    .venv/bin/python -m projections.sql.migrate current URL
    .venv/bin/python -m projections.sql.migrate revision -m "add column x" URL   # autogenerate
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from careledger.migrations import ALEMBIC_LOCK

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Alembic's ``context`` and ``op`` are process-global proxies: two stores migrating at the same time
# in one process (threads, e.g. a replay into SQLite and PostgreSQL side by side) would run one
# store's revisions against the other's connection.  Every Alembic history of the process (read
# model, key store, API tables) takes the same lock.


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    with ALEMBIC_LOCK:
        command.upgrade(alembic_config(connection), revision)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - developer tool
    parser = argparse.ArgumentParser(prog="python -m projections.sql.migrate")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("upgrade")
    p_up.add_argument("url")
    p_cur = sub.add_parser("current")
    p_cur.add_argument("url")
    p_rev = sub.add_parser("revision")
    p_rev.add_argument("-m", "--message", required=True)
    p_rev.add_argument("url")
    args = parser.parse_args(argv)
    cfg = alembic_config(url=args.url)
    if args.cmd == "upgrade":
        command.upgrade(cfg, "head")
    elif args.cmd == "current":
        command.current(cfg, verbose=True)
    else:
        command.revision(cfg, message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
