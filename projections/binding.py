"""Stores bound to the projection runtime: what the worker and the replay engine are given.

The runtime (``processors``) declares what it needs - a :class:`~processors.runtime.contracts.
Binding` (projection policy + writer), a :class:`~processors.runtime.contracts.StoreSource` for a
worker that follows replay swaps, a :class:`~processors.replay.engine.BuildTarget` for a replay -
and this module provides them from the registry's stores, so ``processors`` never imports a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import RulesConfig, load_rules
from processors.runtime.apply import commit_batch
from processors.runtime.contracts import Binding
from projections.registry import Registry, projection_spec
from projections.sql.shards import MAX_SHARDS, merge_shards, remove_shard, shard_url, sqlite_file
from projections.store import ProjectionStore


def open_bound(projection: str, url: str, rules: RulesConfig, settings: Settings,
               alias: str | None = None) -> tuple[ProjectionStore, Binding]:
    """Open and migrate the store at ``url`` for ``projection``; positions kept under ``alias``."""
    store = projection_spec(projection).open(url, rules, settings.topics.events, projection=alias or projection)
    store.migrate()
    return store, store.binding()


class ActiveStoreSource:
    """A worker's store: the registry's active store of the projection, again after a swap."""

    def __init__(self, settings: Settings, projection: str, rules: RulesConfig) -> None:
        self.settings = settings
        self.projection = projection
        self.rules = rules
        self.registry = Registry(settings)
        self._signature: Any = None
        self._url: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (the worker's applier process opens its own): a fresh registry over there."""
        return (ActiveStoreSource, (self.settings, self.projection, self.rules))

    def open(self) -> Binding:
        self._signature = self.registry.signature()
        self._url = self.registry.active_url(self.projection)
        return open_bound(self.projection, self._url, self.rules, self.settings)[1]

    def swapped(self) -> bool:
        signature = self.registry.signature()
        if signature == self._signature:
            return False
        self._signature = signature
        return self.registry.active_url(self.projection) != self._url


@dataclass(frozen=True)
class StoreRef:
    """A replay's build target (picklable: worker processes open it themselves)."""

    projection: str
    url: str
    rules_path: str | None = None
    private: bool = False  # nothing but this build writes it (a shard, a new shadow or snapshot)

    def rules(self, settings: Settings) -> RulesConfig:
        return load_rules(Path(self.rules_path) if self.rules_path else settings.rules_path)

    def open_store(self, settings: Settings, alias: str | None = None) -> ProjectionStore:
        return open_bound(self.projection, self.url, self.rules(settings), settings, alias)[0]

    def open(self, settings: Settings, alias: str | None = None) -> Binding:
        return open_bound(self.projection, self.url, self.rules(settings), settings, alias)[1]

    def shards(self, count: int) -> list[StoreRef] | None:
        """SQLite has one writer per file: workers build shard files that are merged at the end
        (only into an empty target; otherwise the workers write the target itself, taking turns)."""
        if sqlite_file(self.url) is None or count > MAX_SHARDS or projection_spec(self.projection).kind != "sql":
            return None
        shards = [StoreRef(self.projection, shard_url(self.url, k), self.rules_path, private=True)
                  for k in range(count)]
        for shard in shards:
            remove_shard(shard.url)  # left over by a crashed build: start clean
        return shards

    def merge(self, settings: Settings, shards: Sequence[Any]) -> None:
        store = self.open_store(settings)
        try:
            if store.offsets():
                raise RuntimeError(f"{self.url} is not empty: shards are only merged into an empty store")
            merge_shards(store, [shard.url for shard in shards])  # type: ignore[arg-type]
        finally:
            store.close()

    def drop_shards(self, shards: Sequence[Any]) -> None:
        for shard in shards:
            remove_shard(shard.url)

    def consolidate(self, settings: Settings, aliases: list[str]) -> None:
        """The workers' final positions become the projection's own; the alias rows go."""
        store = self.open_store(settings)
        try:
            positions: dict[int, int] = {}
            for alias in aliases:
                worker = self.open_store(settings, alias)
                try:
                    positions.update(worker.offsets())
                finally:
                    worker.close()
            own = store.offsets()
            moves = [Consumed(p, o, None) for p, o in sorted(positions.items()) if o > own.get(p, -1)]
            if moves:
                binding = store.binding()
                commit_batch(binding.projection, binding.writer, moves)
            store.drop_positions(aliases)
        finally:
            store.close()
