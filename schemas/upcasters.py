"""Version upcasters: old events stay on Kafka as written; readers see the current version.

Register a step with ``@register(type, from_version)``: the function gets a copy of the event
at ``from_version`` (payload copied too, mutate freely) and returns it at ``from_version + 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.models import LATEST_VERSIONS

Event = dict[str, Any]
Upcaster = Callable[[Event], Event]

#: type -> the version ``upcast`` returns.
CURRENT_VERSIONS: dict[str, int] = dict(LATEST_VERSIONS)
_STEPS: dict[tuple[str, int], Upcaster] = {}


def register(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def decorator(func: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _STEPS:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _STEPS[key] = func
        return func

    return decorator


def upcast(event: Event) -> Event:
    """Return ``event`` at the current version of its type (the same dict if already current)."""
    event_type = event["type"]
    version = event.get("version", 1)
    current = CURRENT_VERSIONS.get(event_type)
    if current is None:
        raise ValueError(f"type: unknown event type {event_type!r}")
    if version == current:
        return event
    if version > current:
        raise ValueError(f"version: {event_type} has no version {version} (current is {current})")
    while version < current:
        step = _STEPS.get((event_type, version))
        if step is None:
            raise ValueError(f"version: no upcaster from {event_type} v{version}")
        copied = dict(event)
        copied["payload"] = dict(event["payload"])
        event = step(copied)
        version += 1
        event["version"] = version
    return event


def missing_steps() -> list[tuple[str, int]]:
    """Versions below current with no registered step (a unit test keeps this empty)."""
    return [(t, v) for t, cur in CURRENT_VERSIONS.items() for v in range(1, cur) if (t, v) not in _STEPS]


# ---- the steps --------------------------------------------------------------------------------
@register("visit.completed", 1)
def _visit_v1_to_v2(event: Event) -> Event:
    """v2 adds the optional ``duration_minutes``: unknown for v1 visits."""
    event["payload"]["duration_minutes"] = None
    return event
