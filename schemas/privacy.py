"""Which payload fields are sensitive, and what a forgotten person's events look like.

Pure data rules shared by the producer (what it seals), the processors (what unsealing restores)
and the stores (what ``forget`` rewrites); the crypto lives in ``producers/keystore.py`` and the
batch function in ``processors/privacy.py``.  See docs/privacy.md.

* :data:`SENSITIVE_FIELDS`: per event type, the payload fields the producer moves into the
  ``sealed`` box (AES-256-GCM under the person's data key).  Disability category and grade, birth
  date and the low-income flag describe health and financial status (PIPL "sensitive personal
  information"); visit hazards describe health, abuse and living conditions; a name and a phone
  number tie all of that to a living person.
* :func:`erase_event`: the one rule for a forgotten person's event, used live (stores'
  ``forget``) and on replay (``unseal_batch``) so both give the same rows: ``person_id`` becomes the
  unlinkable tombstone id, the sealed box goes, the sensitive fields become erased markers
  (category ``"erased"``, the others ``None``, hazards ``[]``; a profile change loses them).
"""

from __future__ import annotations

import copy
from typing import Any

Event = dict[str, Any]

SEALED_KEY = "sealed"
ERASED = "erased"  # the category of a forgotten person (counts by category show it)
ERASED_FLAG = "erased"  # envelope key set to True on an erased event

SENSITIVE_FIELDS: dict[str, tuple[str, ...]] = {
    "person.registered": ("birth_date", "category", "grade", "hardship", "name", "phone"),
    "person.profile_changed": ("category", "grade", "hardship", "name", "phone"),
    "visit.completed": ("hazards",),
}
ALL_SENSITIVE: frozenset[str] = frozenset(f for fields in SENSITIVE_FIELDS.values() for f in fields)
#: type -> payload values a forgotten person's event carries instead (absent type: fields dropped).
ERASED_VALUES: dict[str, dict[str, Any]] = {
    "person.registered": {"birth_date": None, "category": ERASED, "grade": None, "hardship": None},
    "visit.completed": {"hazards": []},
}


def sensitive_fields(event_type: str) -> tuple[str, ...]:
    return SENSITIVE_FIELDS.get(event_type, ())


def has_plain_sensitive(event: Event) -> bool:
    """The event still carries a sensitive field in clear (not sealed yet)."""
    payload = event.get("payload") or {}
    return any(name in payload for name in sensitive_fields(event.get("type", "")))


def is_erased(event: Event) -> bool:
    return bool(event.get(ERASED_FLAG))


def erase_event(event: Event, tombstone_id: str) -> Event:
    """A forgotten person's event as every projection keeps it (a new dict; ``event`` untouched).

    Deterministic whether ``event`` arrives sealed (key destroyed: nothing to read) or plain (a
    store's own row, or an event published before sealing existed), so live and replay agree."""
    out = {k: v for k, v in event.items() if k != SEALED_KEY}
    payload = copy.deepcopy(event.get("payload") or {})
    for name in sensitive_fields(event.get("type", "")):
        payload.pop(name, None)
    payload.update(copy.deepcopy(ERASED_VALUES.get(event.get("type", ""), {})))
    out["payload"] = payload
    out["person_id"] = tombstone_id
    out[ERASED_FLAG] = True
    return out


def strip_sensitive(event: Event) -> Event:
    """The event without its sensitive payload fields (and without the sealed box): what a store
    that needs none of them (ClickHouse's ``body``) keeps."""
    fields = sensitive_fields(event.get("type", ""))
    if not fields and SEALED_KEY not in event:
        return event
    out = {k: v for k, v in event.items() if k != SEALED_KEY}
    out["payload"] = {k: v for k, v in (event.get("payload") or {}).items() if k not in fields}
    return out
