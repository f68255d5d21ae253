"""The event-history projection: every event as it is, for stores that answer ad-hoc questions
from history itself (ClickHouse computes counts from it; reversals are applied in its queries).

Nothing to load and nothing to fold: the policy only hands the fresh events on, with their
positions, to the writer.
"""

from __future__ import annotations

from processors.domain.model import Consumed, Event


class EventHistory:
    """``processors.runtime.contracts.Projection`` whose changes are the records themselves."""

    name = "history"

    def plan(self, events: list[Event]) -> None:
        return None

    def fold(self, state: None, records: list[Consumed]) -> list[Consumed]:
        return records

    def applied(self, changes: list[Consumed]) -> int:
        return len(changes)
