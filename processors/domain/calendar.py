"""Business-time helpers: the event's date is the calendar date of ``occurred_at`` in Asia/Shanghai.

Dates travel as ``YYYY-MM-DD`` strings (they compare correctly as strings and serialise as-is);
instants are compared through :func:`instant_key`, a fixed-width UTC string, so two timestamps
written with different offsets order by the moment they denote, not by their text.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")

# Replays parse each timestamp once per event and again when alerts compare stored ones;
# a bounded cache keeps the second look-up cheap without growing with the history.
_CACHE_SIZE = 1 << 16
# Asia/Shanghai has been a fixed UTC+08:00 (no DST) since 1992, so for a timestamp written with
# that offset the date in its text IS the business date: skip parsing for the common case.
_BUSINESS_OFFSET = "+08:00"
_FIXED_OFFSET_SINCE_YEAR = "1992"


def _moment(occurred_at: str) -> datetime:
    moment = datetime.fromisoformat(occurred_at)
    if moment.tzinfo is None:  # validated events carry an offset; be lenient with local time
        moment = moment.replace(tzinfo=BUSINESS_TZ)
    return moment


@lru_cache(maxsize=_CACHE_SIZE)
def _local_date(occurred_at: str) -> str:
    return _moment(occurred_at).astimezone(BUSINESS_TZ).date().isoformat()


def event_date(occurred_at: str) -> str:
    """Calendar date (``YYYY-MM-DD``) of ``occurred_at`` in Asia/Shanghai."""
    if occurred_at.endswith(_BUSINESS_OFFSET) and occurred_at[:4] >= _FIXED_OFFSET_SINCE_YEAR:
        return occurred_at[:10]
    return _local_date(occurred_at)


@lru_cache(maxsize=_CACHE_SIZE)
def instant_key(occurred_at: str) -> str:
    """Fixed-width UTC rendering of ``occurred_at``: string order == time order."""
    utc = _moment(occurred_at).astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def latest(occurred_ats: list[str]) -> str:
    """The latest timestamp (as written) among ``occurred_ats``; ties broken by text for determinism."""
    return max(occurred_ats, key=lambda ts: (instant_key(ts), ts))


def period_start(period: str) -> str:
    """First day (``YYYY-MM-01``) of a ``YYYY-MM`` payment period."""
    return period + "-01"


def add_days(day: str | date, days: int) -> date:
    base = date.fromisoformat(day) if isinstance(day, str) else day
    return base + timedelta(days=days)


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month(day: date) -> str:
    """``YYYY-MM`` of the month before ``day``'s month."""
    last_of_previous = month_start(day) - timedelta(days=1)
    return last_of_previous.strftime("%Y-%m")
