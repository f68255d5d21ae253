"""The live worker follows the projection registry (projections/registry.py).

At every batch boundary the worker asks :meth:`RegistryFollower.check` (a ``stat`` of the
registry file; the file is only parsed when it changed).  After a swap:

1. the old store's alert outbox is drained (nothing it committed stays unpublished);
2. the new store is opened and migrated, and becomes the store of the runner, the relay and the
   lag probe; the old one is closed;
3. every assigned partition is sought to the new store's offset + 1, and the worker's position
   guard (processors/positions.py) is told so: records the stream had already buffered from the
   old positions, beyond the new store's next offset, are dropped (they are read again after the
   seek); records at or below the new store's offsets are dropped by the store itself.  Together:
   no gap, no double count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from careledger.settings import Settings
from processors.positions import PositionGuard
from projections.registry import Registry, projection_spec

log = logging.getLogger("careledger.processor")


class RegistryFollower:
    def __init__(self, settings: Settings, projection: str, rules: Any, url: str | None = None) -> None:
        self.settings = settings
        self.projection = projection
        self.rules = rules
        self.registry = Registry(settings)
        self.url = url  # the first store (default: the registry's active one)
        self._signature: Any = None
        self.swaps = 0

    def open(self) -> Any:
        """Open (and migrate) the active store of the projection."""
        self._signature = self.registry.signature()
        if self.url is None or self.swaps:
            self.url = self.registry.active_url(self.projection)
        store = projection_spec(self.projection).open(self.url, self.rules, self.settings.topics.events)
        store.migrate()
        return store

    def changed_url(self) -> str | None:
        """The new active URL after a swap, else None (cheap when nothing changed)."""
        signature = self.registry.signature()
        if signature == self._signature:
            return None
        self._signature = signature
        url = self.registry.active_url(self.projection)
        return url if url != self.url else None

    async def at_batch_boundary(self, app: Any, runner: Any, relay: Any, lag: Any, positions: PositionGuard) -> None:
        """Swap stores if the registry says so (before the batch in hand is admitted)."""
        if await asyncio.to_thread(self.changed_url) is not None:
            await self._switch(app, runner, relay, lag, positions)

    async def _switch(self, app: Any, runner: Any, relay: Any, lag: Any, positions: PositionGuard) -> None:
        old = runner.store
        if relay is not None:
            await asyncio.to_thread(relay.drain)
        self.swaps += 1
        new = await asyncio.to_thread(self.open)
        runner.store = new
        if relay is not None:
            relay.store = new
        if lag is not None and hasattr(lag, "stores"):
            lag.stores[self.projection] = new
        stored = await asyncio.to_thread(new.offsets)
        topic = self.settings.topics.events
        for tp in app.consumer.assignment():
            if tp.topic == topic:
                offset = stored[tp.partition] + 1 if tp.partition in stored else 0
                await app.consumer.seek(tp, offset)
                positions.sought(tp.partition, offset)
        await asyncio.to_thread(old.close)
        log.info("registry swap: %s now writes %s (positions %s)", self.projection,
                 getattr(new, "name", "?"), dict(sorted(stored.items())))
