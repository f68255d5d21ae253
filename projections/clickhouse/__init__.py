"""ClickHouse projection: event history (ReplacingMergeTree) and counts from it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.clickhouse.store import ClickHouseStore

__all__ = ["ClickHouseStore"]


def __getattr__(name: str) -> Any:
    if name == "ClickHouseStore":
        from projections.clickhouse.store import ClickHouseStore

        return ClickHouseStore
    raise AttributeError(name)
