"""Step 1 of every batch: raw records → decoded, unsealed events; poison → the dead-letter topic.

* the value is decoded by ``schemas.wire.decode_event`` (typed, fast; the full validator gives
  the reasons for anything it refuses);
* the key must be the event's partition key (a person's events stay in order on one partition);
* sealed fields are opened, and a forgotten person's events erased, by ``processors.privacy``;
* the message's W3C ``traceparent`` header rides along (``Consumed.trace``) to the outbox rows
  the event causes (careledger/tracing.py).

A poison record travels on as ``Consumed(event=None)``: only its position advances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from careledger.tracing import header as traceparent_header
from processors.domain.model import Consumed
from processors.privacy import Unsealer, unsealer_for
from processors.runtime.records import DeadLetter, RawRecord
from producers.keystore import KeyStore, SealedDataError
from schemas.enums import PERSONLESS_TYPES
from schemas.validation import PoisonRecord, partition_key
from schemas.wire import decode_event

Event = dict[str, Any]
KeystoreOpener = Callable[[bool], KeyStore | None]
"""``open(create)`` → the key store (None: none exists yet and ``create`` is False)."""


def check_key(key: bytes | None, event: Event) -> None:
    """A message keyed by anything but its ``partition_key`` may sit on another partition than the
    person's other events, so their order is lost: poison rather than applied out of order.
    (An absent key is let through: producers outside careledger's publisher may leave it out.)"""
    if key is not None and key != partition_key(event).encode("utf-8"):
        field = "payload.employer" if event["type"] in PERSONLESS_TYPES else "person_id"
        raise PoisonRecord(f"key: does not match the event's {field} (events are keyed by it so that "
                           "they stay in order on one partition)")


class RecordDecoder:
    """Decodes batches for one runtime; opens the key store on the first sealed event."""

    def __init__(self, dead_letter: DeadLetter, open_keystore: KeystoreOpener) -> None:
        self.dead_letter = dead_letter
        self._open_keystore = open_keystore
        self._unsealer: Unsealer | None = None
        self.poison = 0

    def decode(self, raws: Sequence[RawRecord]) -> list[Consumed]:
        events: list[Event | None] = []
        for raw in raws:
            try:
                event: Event | None = decode_event(raw.value)
                assert event is not None
                check_key(raw.key, event)
            except PoisonRecord as exc:
                self.reject(raw, str(exc))
                event = None
            events.append(event)
        events = self._unseal(events, raws)
        return [Consumed(raw.partition, raw.offset, event,
                         traceparent_header(raw.headers) if raw.headers and event is not None else None)
                for raw, event in zip(raws, events, strict=True)]

    def _unseal(self, events: list[Event | None], raws: Sequence[RawRecord]) -> list[Event | None]:
        if self._unsealer is None:
            sealed = any(e is not None and "sealed" in e for e in events)
            keystore = self._open_keystore(sealed)
            if keystore is None:  # no key store yet: nothing sealed, nobody forgotten
                return events
            self._unsealer = unsealer_for(keystore)
        failed: dict[int, SealedDataError] = {}
        out = self._unsealer.unseal(events, on_error=failed.__setitem__)
        for index, exc in failed.items():
            self.reject(raws[index], str(exc))
        return out

    def reject(self, raw: RawRecord, reason: str) -> None:
        """Dead-letter one record (poison found here, or by the runtime's bisection)."""
        self.poison += 1
        self.dead_letter(raw, [reason])
