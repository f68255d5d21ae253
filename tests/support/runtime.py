"""Running stores through the projection runtime in tests, as workers and replays do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from processors.runtime.apply import ProjectionRuntime
from processors.runtime.decoding import RecordDecoder
from processors.runtime.records import RawRecord


def runtime_for(store: Any, keystore: Any = None,
                dead_letter: Callable[[RawRecord, list[str]], None] | None = None) -> ProjectionRuntime[Any, Any, Any]:
    """The runtime a worker runs on ``store`` (its ``binding()``), with ``keystore`` for sealed
    events and ``dead_letter`` collecting what the worker would publish to the DLQ."""
    binding = store.binding()
    decoder = RecordDecoder(dead_letter or (lambda raw, reasons: None), lambda create: keystore)
    return ProjectionRuntime(binding.projection, binding.writer, decoder, sleep=lambda _: None)


def run_raws(store: Any, raws: Sequence[RawRecord], size: int, keystore: Any = None) -> list[str]:
    """Apply ``raws`` in batches of ``size``; returns the dead-letter reasons."""
    dead: list[str] = []
    runtime = runtime_for(store, keystore, lambda raw, reasons: dead.extend(reasons))
    for i in range(0, len(raws), size):
        runtime.apply(raws[i:i + size])
    return dead
