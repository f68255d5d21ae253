"""SQL read models (SQLite / PostgreSQL): SQLAlchemy Core tables, Alembic migrations, ``SqlStore``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.sql.store import EventApplyError, SqlStore

__all__ = ["EventApplyError", "SqlStore"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from projections.sql import store

        return getattr(store, name)
    raise AttributeError(name)
