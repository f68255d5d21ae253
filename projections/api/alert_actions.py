"""What happens after a person acknowledges or resolves an alert through the API.

The store records who and when (``store.acknowledge_alert``) before this hook runs.  The action
must ALSO become an event on Kafka so the history stays event-sourced; that wiring is not done.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("careledger.api.alerts")


def record_alert_action_event(
    *,
    action: str,  # "acknowledge" | "resolve"
    alert: dict[str, Any],  # the alert as the store returned it after the action
    actor: str,  # token name
    role: str,
    note: str | None,
    at: str,  # RFC 3339 UTC time the API recorded
    publisher: Any = None,  # the app's EventPublisher, or None when publishing is not configured
) -> None:
    """Publish the alert action as an event.

    TODO(kafka wiring): publish an event describing this action via ``publisher`` once its event
    type/schema exists in the catalogue (CONTRACT.md §1 has none yet; do not invent one here).
    Until then this only logs (without the note text, which may hold personal details).
    Raising here makes the API answer an error AFTER the store already recorded the action.
    """
    log.info("alert %s %s by %s (%s) at %s; event publishing not wired yet",
             alert.get("alert_id"), action, actor, role, at)
