"""Alert acknowledgement and resolution as events: the log stays the source of truth.

The API publishes an ``alert.handled`` event (keyed by the alert's person, so it is ordered with
that person's other events) and waits for the broker's acknowledgement; only then does it record
the action in the store for an immediate answer.  The processor applies the same event with the
same values (``projections.sql.store.alert_action_values``), so a replay reproduces who handled
which alert and when.  If Kafka is unreachable the action fails with 503 and nothing is recorded.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

log = logging.getLogger("careledger.api.alerts")


def alert_action_event(*, action: str, alert: dict[str, Any], actor: str, note: str | None,
                       at: str, town: str) -> dict[str, Any]:
    return {
        "event_id": f"alert-{action[:3]}-{uuid.uuid4().hex}",
        "type": "alert.handled",
        "version": 1,
        "occurred_at": at,
        "person_id": alert["person_id"],
        "town": town,
        "village": None,
        "source": "careledger-api",
        "payload": {"alert_id": alert["alert_id"], "action": action, "by": actor, "note": note},
    }


def record_alert_action_event(*, action: str, alert: dict[str, Any], actor: str, role: str,
                              note: str | None, at: str, town: str, publisher: Any) -> dict[str, Any]:
    """Publish the action and wait for the broker (raises on failure); return the event."""
    event = alert_action_event(action=action, alert=alert, actor=actor, note=note, at=at, town=town)
    publisher.publish_and_wait([(event, None)])
    log.info("alert %s %s by %s (%s) at %s: event %s", alert["alert_id"], action, actor, role, at,
             event["event_id"])
    return event
