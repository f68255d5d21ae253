"""People's actions on alerts and warnings as events: the log stays the source of truth.

The API publishes the event (``alert.handled``: assign, acknowledge, resolve; ``warning.snoozed``),
keyed by the person it is about so it is ordered with that person's other events, and waits for
the broker's acknowledgement; only then does it record the action in the store for an immediate
answer.  The processor applies the same event with the same values
(``projections.sql.writer.alert_action_values``), so a replay reproduces who did what and when.  If
Kafka is unreachable the action fails with 503 and nothing is recorded.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

log = logging.getLogger("careledger.api.alerts")


def _event(event_type: str, tag: str, person_id: str, town: str, at: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"{tag}-{uuid.uuid4().hex}", "type": event_type, "version": 1, "occurred_at": at,
            "person_id": person_id, "town": town, "village": None, "source": "careledger-api", "payload": payload}


def alert_action_event(*, action: str, alert: dict[str, Any], actor: str, note: str | None, at: str, town: str,
                       assignee: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"alert_id": alert["alert_id"], "action": action, "by": actor, "note": note}
    if action == "assign":
        payload["assignee"] = assignee
    return _event("alert.handled", f"alert-{action[:3]}", alert["person_id"], town, at, payload)


def record_alert_action_event(*, action: str, alert: dict[str, Any], actor: str, role: str, note: str | None,
                              at: str, town: str, publisher: Any, assignee: str | None = None) -> dict[str, Any]:
    """Publish the action and wait for the broker (raises on failure); return the event."""
    event = alert_action_event(action=action, alert=alert, actor=actor, note=note, at=at, town=town,
                               assignee=assignee)
    publisher.publish_and_wait([(event, None)])
    log.info("alert %s %s by %s (%s) at %s: event %s", alert["alert_id"], action, actor, role, at,
             event["event_id"])
    return event


def record_snooze_event(*, warning: dict[str, Any], until: str, reason: str, actor: str, at: str,
                        publisher: Any) -> dict[str, Any]:
    """Publish ``warning.snoozed`` and wait for the broker (raises on failure); return the event."""
    event = _event("warning.snoozed", "warning-snz", warning["person_id"], warning.get("town") or "", at,
                   {"warning_id": warning["warning_id"], "until": until, "reason": reason, "by": actor})
    publisher.publish_and_wait([(event, None)])
    log.info("warning %s snoozed until %s by %s: event %s", warning["warning_id"], until, actor, event["event_id"])
    return event
