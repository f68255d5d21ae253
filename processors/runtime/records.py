"""The records the runtime moves: raw Kafka records in, decoded ones on, a batch's outcome out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class RawRecord(NamedTuple):
    """One message of the events topic as a consumer hands it over (``headers``: the Kafka
    message headers, ``[(name, bytes)]``; the decoder reads the W3C ``traceparent`` among them)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


DeadLetter = Callable[[RawRecord, list[str]], None]
"""Publish one record with its reasons to the dead-letter topic (must not raise for bad text)."""


@dataclass(slots=True)
class BatchStats:
    """Cumulative counters of one runtime (metrics, logs, benchmarks)."""

    batches: int = 0
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    poison: int = 0
    retries: int = 0
    seconds: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)
