"""What the producers add to the schema for input from people: master data, a plausible time
window, clean text.  Applied once, at the door (``producers.pipeline.prepare``: ingest, import-csv,
HTTP); never on the read path, so events already on the log are read as they were written.

* ``town`` must be one of the district's towns (configuration, CARELEDGER_TOWNS).  It is compared
  after NFKC, without invisible characters and blanks, and stored as the configured name; anything
  else (``锦屏街``, ``錦屏街道``) is refused with the list of valid towns.
* ``occurred_at`` must fall between ``earliest`` (00:00 Asia/Shanghai) and now + ``ahead_days``:
  a year-9999 or year-0001 timestamp is a typo, and one that cannot even be converted to UTC
  breaks every reader downstream.
* Text: no control characters anywhere (NUL, escape, line separators; a reason or a note may
  hold line breaks and tabs); invisible characters (zero-width space, bidi marks, BOM ...) are
  refused in identifiers and removed from free text; ``town`` and ``village`` are NFKC-normalised
  with blanks collapsed.
"""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.models import parse_timestamp
from schemas.text import (
    BMP_INVISIBLE_CHARS,
    INVISIBLE,
    INVISIBLE_CHARS,
    MULTILINE_OK,
    Loc,
    control_char,
    dotted,
    has_astral,
    invisible_char,
    normalise_name,
    string_paths,
)

Event = dict[str, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_EARLIEST = date(1949, 10, 1)
DEFAULT_AHEAD_DAYS = 3.0

#: string fields that identify something: an invisible character there is refused, not removed
#: (two ids that look the same must be the same id)
IDENTIFIERS = frozenset({("event_id",), ("person_id",), ("payload", "need_id"), ("payload", "reverses"),
                         ("payload", "alert_id")})
#: place names: NFKC, no invisible characters, blanks collapsed
PLACE_NAMES = frozenset({("town",), ("village",)})
#: free-text fields that may span lines
MULTILINE = frozenset({("payload", "reason"), ("payload", "note")})
# What the encoded (orjson) text of an event shows when one of its strings holds a control or an
# invisible character: a backslash (orjson escapes C0 controls as \n, \u0000 ...; a harmless
# escaped backslash only costs the exact check) or the character itself.  One character-class
# search instead of a walk per event (BMP-only when the text has no astral character: faster).
_SUSPECT = re.compile(f"[\\\\\x7f-\x9f\u2028\u2029{INVISIBLE_CHARS}]")
_BMP_SUSPECT = re.compile(f"[\\\\\x7f-\x9f\u2028\u2029{BMP_INVISIBLE_CHARS}]")


def _compact(name: str) -> str:
    return "".join(normalise_name(name).split())


@dataclass(frozen=True)
class InputRules:
    """``towns``: the district's towns (None: not checked - only for tools without configuration,
    such as benchmarks); ``earliest`` / ``ahead_days``: the window of ``occurred_at``."""

    towns: tuple[str, ...] | None = None
    earliest: date = DEFAULT_EARLIEST
    ahead_days: float = DEFAULT_AHEAD_DAYS
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _by_compact: dict[str, str] = field(init=False, repr=False, compare=False)
    _bounds: list[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(self.towns or ()))
        object.__setattr__(self, "_by_compact", {_compact(t): t for t in self.towns or ()})
        object.__setattr__(self, "_bounds", [0.0, "", ""])

    def __reduce__(self) -> Any:  # to worker processes: the fields, not the caches
        return (InputRules, (self.towns, self.earliest, self.ahead_days))

    # ---- the one entry point -----------------------------------------------------------------
    def apply(self, event: Event, encoded: str, *, astral: bool | None = None) -> tuple[list[str], bool]:
        """Check and normalise a validated, canonical ``event`` in place; ``encoded`` is its JSON
        text (for a cheap look for suspicious characters; ``astral``: whether it has characters
        beyond U+FFFF, if known).  Returns (reasons, changed)."""
        reasons: list[str] = []
        changed = False
        if astral is None:
            astral = has_astral(encoded)
        if (_SUSPECT if astral else _BMP_SUSPECT).search(encoded):
            text_reasons, changed = self._clean_text(event)
            reasons += text_reasons
        town_reason, town_changed = self._town(event)
        if town_reason:
            reasons.append(town_reason)
        village = event.get("village")
        if village is not None:
            clean = normalise_name(village)
            if clean != village:
                if clean:
                    event["village"] = clean
                    changed = True
                else:
                    reasons.append("village: blank once invisible characters are removed")
        window = self._window(event["occurred_at"])
        if window:
            reasons.append(window)
        return reasons, changed or town_changed

    # ---- town ----------------------------------------------------------------------------------
    def _town(self, event: Event) -> tuple[str | None, bool]:
        town = event["town"]
        if self.towns is None:
            clean = normalise_name(town)
            if clean != town and clean:
                event["town"] = clean
                return None, True
            return (None if clean else "town: blank once invisible characters are removed"), False
        if town in self._names:
            return None, False
        known = self.known_town(town)
        if known is not None:
            event["town"] = known
            return None, True
        return "town: " + self.unknown_town(town), False

    def known_town(self, text: str) -> str | None:
        """The configured town ``text`` names (NFKC, invisible characters and blanks aside), or
        None (also when no towns are configured)."""
        if text in self._names:
            return text
        return self._by_compact.get(_compact(text))

    def unknown_town(self, text: str) -> str:
        """What to tell someone who wrote ``text`` for a town: the valid ones, and the nearest."""
        assert self.towns is not None
        hint = difflib.get_close_matches(_compact(text), list(self._by_compact), n=1, cutoff=0.5)
        guess = f" (did you mean {self._by_compact[hint[0]]}?)" if hint else ""
        return f"must be one of the district's {len(self.towns)} towns{guess}: " + ", ".join(self.towns)

    # ---- occurred_at ---------------------------------------------------------------------------
    def window_text(self) -> str:
        return f"between {self.earliest.isoformat()} and {self.ahead_days:g} days from now"

    def _window(self, occurred_at: str) -> str | None:
        low, high = self._day_bounds()
        if low <= occurred_at[:10] <= high:  # a day away from both ends: no offset can move it out
            return None
        try:
            moment = parse_timestamp(occurred_at).astimezone(UTC)
        except (ValueError, OverflowError):
            moment = None
        start = datetime.combine(self.earliest, datetime.min.time(), SHANGHAI)
        end = datetime.now(UTC) + timedelta(days=self.ahead_days)
        if moment is None or not start <= moment <= end:
            return (f"occurred_at: must be {self.window_text()} (CARELEDGER_OCCURRED_AT_EARLIEST, "
                    "CARELEDGER_OCCURRED_AT_AHEAD_DAYS)")
        return None

    def _day_bounds(self) -> tuple[str, str]:
        """Dates (YYYY-MM-DD) that are inside the window whatever their time and offset,
        recomputed every minute."""
        now = time.time()
        if now - self._bounds[0] > 60:
            low = (self.earliest + timedelta(days=2)).isoformat()
            high = (datetime.now(UTC) + timedelta(days=self.ahead_days - 2)).date().isoformat()
            self._bounds[:] = [now, low, high]
        return self._bounds[1], self._bounds[2]

    # ---- text ----------------------------------------------------------------------------------
    def _clean_text(self, event: Event) -> tuple[list[str], bool]:
        reasons: list[str] = []
        changed = False
        for loc, value in list(string_paths(event)):
            control = control_char(value, MULTILINE_OK if loc in MULTILINE else frozenset())
            if control:
                reasons.append(f"{dotted(loc)}: contains a control character ({control}); remove it")
                continue
            invisible = invisible_char(value)
            if invisible is None or loc in PLACE_NAMES:  # those are normalised as a whole
                continue
            if loc in IDENTIFIERS:
                reasons.append(f"{dotted(loc)}: contains an invisible character ({invisible}); an identifier "
                               "must be plain text")
                continue
            clean = INVISIBLE.sub("", value).strip()
            if not clean:
                reasons.append(f"{dotted(loc)}: blank once invisible characters are removed")
                continue
            _set(event, loc, clean)
            changed = True
        return reasons, changed


def _set(obj: Any, loc: Loc, value: str) -> None:
    for part in loc[:-1]:
        obj = obj[part]
    obj[loc[-1]] = value

