"""Python's cyclic garbage collector in a process that applies batches, and a clock for it.

Why: the applier process's heap is mostly what start-up built (SQLAlchemy, the schemas, the Kafka
client: ~800 modules), and every full collection walked all of it again; a batch meanwhile
allocates hundreds of thousands of short-lived objects, so the youngest generation filled every
700 allocations.  Measured at 1M events (bench/pipeline.py): 12.7 s of the applier's 91 s of work
was the collector.  :func:`settle_after_start` moves the start-up heap out of the collector's
sight (``gc.freeze``) and lets the youngest generation grow to 50,000 objects, most of which a
batch has freed by reference counting before anyone looks (docs/performance.md).  Memory is not
at risk: only cyclic garbage waits longer, and a batch makes little of it.

Call it in a process of its own (the applier, a replay worker), once its store is open: the
settings are process-wide.
"""

from __future__ import annotations

import gc
import time

#: the youngest generation is collected after this many net allocations (Python's default: 700)
GEN0_THRESHOLD = 50_000


def settle_after_start() -> None:
    """Freeze what start-up built and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)


class CollectorPause:
    """No cyclic garbage collection from ``with`` until :meth:`resume` or the block's end (only when
    ``paused``; a collector that was off already stays off).

    For a build that keeps its state resident (processors/runtime/resident.py): its decoded
    batches and its growing state survive every young collection, so each collection walked them
    and found almost nothing: at 1M events a one-worker build spent 8.5 of 68.5 s in the collector
    and ran in 61.6 s without it (docs/performance.md).  Reference counting still frees everything that is not in a
    cycle; the few cycles wait until the state is dropped or the build ends."""

    def __init__(self, paused: bool = True) -> None:
        self.paused = paused

    def __enter__(self) -> CollectorPause:
        self.paused = self.paused and gc.isenabled()
        if self.paused:
            gc.disable()
        return self

    def resume(self) -> None:
        if self.paused:
            gc.enable()
            self.paused = False

    def __exit__(self, *_exc: object) -> None:
        self.resume()


class GcClock:
    """A ``gc.callbacks`` entry that adds the time the collector runs to ``spent["gc"]``, so a
    process's report can say how much of its time the collector took."""

    def __init__(self, spent: dict[str, float]) -> None:
        self.spent = spent
        self.spent.setdefault("gc", 0.0)
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.spent["gc"] += time.perf_counter() - self.started

    def install(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


__all__ = ["GEN0_THRESHOLD", "CollectorPause", "GcClock", "settle_after_start"]
