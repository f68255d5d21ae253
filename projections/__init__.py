"""Read-model stores behind one interface (``projections.store.ProjectionStore``).

``open_store(url, rules)`` picks the implementation from the URL scheme:

- ``sqlite:///path`` or ``postgresql+psycopg://...`` (``postgresql://`` too) -> ``SqlStore``
  (counts, persons, alerts, warnings, outbox);
- ``clickhouse://host:port/db`` -> ``ClickHouseStore`` (event history + counts).

Implementations are imported lazily so a process only loads the drivers it uses.
"""

from __future__ import annotations

from typing import Any

from projections.store import PersonLevelStore, ProjectionStore

__all__ = ["PersonLevelStore", "ProjectionStore", "open_store", "store_kind"]


def store_kind(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return "sqlite"
    if base in ("postgresql", "postgres"):
        return "postgresql"
    if base == "clickhouse":
        return "clickhouse"
    raise ValueError(f"no projection store for URL scheme {scheme!r} (sqlite, postgresql, clickhouse)")


def open_store(url: str, rules: Any = None, **kwargs: Any) -> ProjectionStore:
    """Open (not migrate) the store for ``url``; ``kwargs`` go to the store (projection, topic)."""
    kind = store_kind(url)
    if kind == "clickhouse":
        from projections.clickhouse.store import ClickHouseStore

        return ClickHouseStore(url, **kwargs)
    from projections.sql.store import SqlStore

    if kind == "postgresql" and url.split(":", 1)[0].lower() in ("postgresql", "postgres"):
        url = "postgresql+psycopg:" + url.split(":", 1)[1]
    return SqlStore(url, rules, **kwargs)
