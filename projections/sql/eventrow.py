"""Small, store-side helpers shared by the SQL and ClickHouse stores (no business rules here)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from schemas.jsontext import dumps_canonical

SHANGHAI = ZoneInfo("Asia/Shanghai")

# kind (CONTRACT §2 counts) -> (event type, payload field that is the count key; None: key is "")
KIND_SOURCES: dict[str, tuple[str, str | None]] = {
    "payment": ("payment.disbursed", "program"),
    "service": ("service.delivered", "service"),
    "visit": ("visit.completed", "visit_kind"),
    "job": ("job.placed", "placement_kind"),
    "need": ("need.registered", "need"),
    "person": ("person.registered", "category"),
    "posting": ("job.posted", None),
}

GROUP_COLUMNS = ("key", "town", "month", "date")


def parse_occurred_at(value: str) -> datetime:
    """RFC 3339 text -> aware datetime (a naive value is taken as Asia/Shanghai time)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=SHANGHAI)
    return dt


def event_date(event: dict[str, Any]) -> str:
    """The event's *date*: calendar date of ``occurred_at`` in Asia/Shanghai (``YYYY-MM-DD``);
    the domain's own helper, so stored dates always match the fact rows."""
    from processors.domain.calendar import event_date as domain_event_date

    return domain_event_date(str(event["occurred_at"]))


def iso(value: Any) -> str | None:
    """date/datetime/str/None -> ISO text or None."""
    if value is None:
        return None
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def dumps(obj: Any) -> str:
    """Canonical JSON text (sorted keys, UTF-8 kept) so equal objects store identical text."""
    return dumps_canonical(obj)


def check_kind(kind: str) -> tuple[str, str | None]:
    try:
        return KIND_SOURCES[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KIND_SOURCES)}") from None


def check_group_by(group_by: list[str] | tuple[str, ...]) -> list[str]:
    cols: list[str] = []
    for col in group_by:
        if col not in GROUP_COLUMNS:
            raise ValueError(f"cannot group by {col!r}; expected any of {list(GROUP_COLUMNS)}")
        if col not in cols:
            cols.append(col)
    return cols


def date_text(value: date | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return date.fromisoformat(str(value)).isoformat()
