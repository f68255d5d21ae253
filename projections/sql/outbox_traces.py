"""The trace context of the outbox rows a batch writes (careledger/tracing.py, step 2).

Each event that causes outbox rows - alert changes, warning notices of its person - gets one
``apply event`` span, a child of the ``traceparent`` it arrived with (``BatchChanges.traces``;
none or malformed: the span starts a new trace), made on first use so a batch without alerts makes
none.  Its rows store that span's traceparent, and the relay publishes them as its children.
"""

from __future__ import annotations

from careledger import tracing
from processors.domain.batch import BatchChanges

Position = tuple[int, int]


class ApplySpans:
    def __init__(self, changes: BatchChanges) -> None:
        self._changes = changes
        self._made: dict[Position, str] = {}
        self._last_of_person: dict[str, Position] | None = None

    def of_event(self, partition: int, offset: int) -> str:
        """The traceparent for rows the event at ``partition``/``offset`` caused."""
        key = (partition, offset)
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = tracing.child("apply event", self._changes.traces.get(key),
                                                   kind=tracing.SpanKind.CONSUMER)
        return made

    def of_person(self, person_id: str) -> str | None:
        """For a warning notice: the span of the person's last event in the batch (None: none)."""
        if self._last_of_person is None:
            self._last_of_person = {e.person_id: (e.partition, e.offset) for e in self._changes.ledger if e.person_id}
        key = self._last_of_person.get(person_id)
        return None if key is None else self.of_event(*key)
