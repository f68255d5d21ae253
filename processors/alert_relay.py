"""The outbox relay: committed alert changes → ``careledger.alerts``, need warnings →
``careledger.warnings`` (at least once).

Alert changes are written to ``alert_outbox`` in the same transaction as the read model, so a
crash can never lose one; this relay publishes pending rows keyed by ``alert_id`` and marks them
sent only after the broker acknowledged them.  A crash in between re-publishes: subscribers
de-duplicate on ``(alert_id, outbox seq)`` (both are in the message).
"""

from __future__ import annotations

import logging

from processors.runtime.contracts import OutboxSource
from producers.publisher import EventPublisher, PublishError

log = logging.getLogger("careledger.alerts")

DRAIN_BATCH = 1000


class AlertRelay:
    def __init__(self, store: OutboxSource, publisher: EventPublisher) -> None:
        self.store = store
        self.publisher = publisher
        self.published = 0

    def drain(self) -> int:
        """Publish every pending outbox row; return how many were published."""
        total = 0
        while True:
            pending = self.store.outbox_pending(DRAIN_BATCH)
            if not pending:
                return total
            try:
                self.publisher.publish_alerts(pending)
            except PublishError as exc:  # broker away: keep them pending, try on the next drain
                log.warning("alert relay: %s; %d alerts stay pending", exc, len(pending))
                return total
            self.store.mark_sent([row["seq"] for row in pending])
            total += len(pending)
            self.published += len(pending)
