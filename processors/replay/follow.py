"""The live worker follows the projection registry (projections/registry.py).

At every batch boundary the worker asks :meth:`RegistryFollower.check` (a ``stat`` of the
registry file; the file is only parsed when it changed).  After a swap:

1. the old store's alert outbox is drained (nothing it committed stays unpublished);
2. the new store is opened and migrated, and becomes the store of the runner, the relay and the
   lag probe; the old one is closed;
3. every assigned partition is seeked to the new store's offset + 1, and a *contiguity guard*
   drops records the stream had already buffered from the old positions that lie beyond the new
   store's next offset (they are read again after the seek).  Records at or below the new
   store's offsets are dropped by the store itself.  Together: no gap, no double count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from careledger.settings import Settings
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
        self.expected: dict[int, int] = {}  # partition -> next offset the store needs (after a swap)
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

    async def at_batch_boundary(self, app: Any, runner: Any, relay: Any, lag: Any, raws: list[Any]) -> list[Any]:
        """Swap stores if the registry says so; return the records to apply."""
        if await asyncio.to_thread(self.changed_url) is not None:
            await self._switch(app, runner, relay, lag)
        return self.guard(raws)

    async def _switch(self, app: Any, runner: Any, relay: Any, lag: Any) -> None:
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
        positions = await asyncio.to_thread(new.offsets)
        topic = self.settings.topics.events
        self.expected = {}
        for tp in app.consumer.assignment():
            if tp.topic != topic:
                continue
            stored = positions.get(tp.partition)
            await app.consumer.seek(tp, stored + 1 if stored is not None else 0)
            if stored is not None:
                self.expected[tp.partition] = stored + 1
        await asyncio.to_thread(old.close)
        log.info("registry swap: %s now writes %s (positions %s)", self.projection,
                 getattr(new, "name", "?"), dict(sorted(positions.items())))

    def guard(self, raws: list[Any]) -> list[Any]:
        if not self.expected:
            return raws
        out = []
        for raw in raws:
            want = self.expected.get(raw.partition)
            if want is None:
                out.append(raw)
            elif raw.offset == want:  # contiguous again: the partition is re-read from the seek
                del self.expected[raw.partition]
                out.append(raw)
            elif raw.offset < want:
                continue  # already in the new store
            # raw.offset > want: buffered before the seek; it comes again after it
        return out

    def reset_partitions(self, partitions: Any) -> None:
        """A rebalance seeks from the store anyway: forget the guard of those partitions."""
        for p in partitions:
            self.expected.pop(p, None)
