"""Domain values ⇄ SQL row tuples of the read model (``projections/sql/tables.py``).

One place that knows both sides, so the writer, the loader and the queries agree on column
order.  Row tuples, not dicts: the write path hands them straight to the DBAPI's ``executemany``.
"""

from __future__ import annotations

from typing import Any

from processors.domain.aggregate import Need, Payment, PersonAggregate
from processors.domain.batch import LedgerEntry
from processors.domain.calendar import instant_key
from processors.domain.model import Alert, Warning
from projections.sql.tables import PROFILE_COLUMNS, STAMP_COLUMNS
from schemas.jsontext import dumps_compact, loads

LEDGER_COLUMNS = ("event_id", "type", "kind", "key", "town", "date", "person_id", "period", "amount_fen",
                  "positions", "counted", "reversed_by", "occurred_at", "payload", "partition", "offset")
PERSON_COLUMNS = ("person_id", *PROFILE_COLUMNS, *STAMP_COLUMNS, "registered_on",
                  "status", "status_effective", "status_stamp", "end_date", "end_event_id", "end_occurred_at",
                  "last_home_visit")
NEED_COLUMNS = ("person_id", "need_id", "need", "registered_on", "registered_by", "fulfilled_on", "fulfilled_by")
PENDING_COLUMNS = ("payment_id", "reversal_id", "person_id")
ALERT_COLUMNS = ("alert_id", "rule", "severity", "person_id", "town", "status", "event_ids", "detected_at",
                 "detected_utc", "hazard", "program", "period", "updated_offset", "raised_at")
WARNING_COLUMNS = ("person_id", "rule", "subject", "since", "need", "detail")
#: ledger columns a payment group is loaded with (``payment_from_row``)
PAYMENT_COLUMNS = ("event_id", "person_id", "key", "period", "amount_fen", "date", "town", "occurred_at",
                   "reversed_by")
#: what a payment or a reversal reads of a person's core (``StatePlan.cores``): the end date
END_COLUMNS = ("person_id", "end_date", "end_event_id", "end_occurred_at")


def ledger_row(entry: LedgerEntry) -> tuple[Any, ...]:
    return (entry.event_id, entry.type, entry.kind, entry.key, entry.town, entry.date, entry.person_id,
            entry.period, entry.amount_fen, entry.positions, 1 if entry.counted else 0, entry.reversed_by,
            entry.occurred_at, dumps_compact(entry.payload), entry.partition, entry.offset)


#: ``stamp_<field>`` of a field without a stamp in a row whose ``stamp`` is set (NULL there means "``stamp``")
NO_STAMP = ""


def pack_stamps(stamps: dict[str, str]) -> tuple[str | None, ...]:
    """``(stamp, stamp_<field>...)``: the earliest stamp held once, each field's NULL when it has that
    one.  The earliest, because the registration stamps every field and later updates only some:
    a row holds one stamp of ~64 characters where it held nine (``tables.STAMP_COLUMNS``)."""
    if not stamps:
        return (None,) * (1 + _N_PROFILE)
    common = min(stamps.values())
    return (common, *(None if (s := stamps.get(n)) == common else NO_STAMP if s is None else s
                      for n in PROFILE_COLUMNS))


def unpack_stamps(packed: tuple[str | None, ...] | Any) -> dict[str, str]:
    """:func:`pack_stamps` undone: field -> stamp, fields without one left out."""
    common = packed[0]
    if common is None:
        return {}
    return {n: common if s is None else s for n, s in zip(PROFILE_COLUMNS, packed[1:], strict=True)
            if s != NO_STAMP}


def person_row(agg: PersonAggregate) -> tuple[Any, ...]:
    if agg.end_only:  # its profile was not loaded: writing it would blank the person's row
        raise ValueError(f"the core of {agg.person_id} was loaded with the end date only; it cannot be written")
    return (agg.person_id, *(getattr(agg, n) for n in PROFILE_COLUMNS), *pack_stamps(agg.profile_stamps),
            agg.registered_on, agg.status, agg.status_effective, agg.status_stamp, agg.end_date, agg.end_event_id,
            agg.end_occurred_at, agg.last_home_visit)


_N_PROFILE = len(PROFILE_COLUMNS)
_HARDSHIP = 1 + PROFILE_COLUMNS.index("hardship")
_STAMPS = slice(1 + _N_PROFILE, 1 + _N_PROFILE + len(STAMP_COLUMNS))


def person_from_row(row: tuple[Any, ...] | Any) -> PersonAggregate:
    """A partial aggregate: the core only (payments, needs, alerts are loaded separately).
    Positional construction: one call per loaded person is on the write path's hot loop."""
    profile = list(row[1:1 + _N_PROFILE])
    if profile[_HARDSHIP - 1] is not None:
        profile[_HARDSHIP - 1] = bool(profile[_HARDSHIP - 1])
    return PersonAggregate(row[0], *profile, unpack_stamps(row[_STAMPS]), *row[_STAMPS.stop:])


def person_end_from_row(row: tuple[Any, ...] | Any) -> PersonAggregate:
    """A partial aggregate with the end date alone (:data:`END_COLUMNS`): what a batch that only
    pays or reverses for the person reads of the core."""
    person_id, end_date, end_event_id, end_occurred_at = row
    return PersonAggregate(person_id, end_date=end_date, end_event_id=end_event_id,
                           end_occurred_at=end_occurred_at, end_only=True)


def payment_from_row(row: tuple[Any, ...] | Any) -> tuple[str, str, Payment]:
    """``(event_id, person_id, Payment)`` from a ledger row read with :data:`PAYMENT_COLUMNS`."""
    event_id, person_id, program, period, amount, day, town, occurred_at, reversed_by = row
    return event_id, person_id, Payment(program, period, int(amount), day, town, occurred_at, reversed_by)


def need_row(person_id: str, need_id: str, need: Need) -> tuple[Any, ...]:
    return (person_id, need_id, need.need, need.registered_on, need.registered_by, need.fulfilled_on,
            need.fulfilled_by)


def need_from_row(row: tuple[Any, ...] | Any) -> tuple[str, str, Need]:
    return row[0], row[1], Need(*row[2:])


def alert_row(alert: Alert, offset: int, raised_at: str) -> tuple[Any, ...]:
    """``raised_at`` (wall clock) is kept from the first write: escalation counts from it."""
    return (alert.alert_id, alert.rule, alert.severity, alert.person_id, alert.town, alert.status,
            dumps_compact(list(alert.event_ids)), alert.detected_at, instant_key(alert.detected_at),
            alert.hazard, alert.program, alert.period, offset, raised_at)


#: columns an alert is loaded with into an aggregate (``alert_from_row``)
ALERT_STATE_COLUMNS = ("alert_id", "rule", "severity", "person_id", "status", "event_ids", "detected_at", "town",
                       "hazard", "program", "period")


def alert_from_row(row: tuple[Any, ...] | Any) -> Alert:
    aid, rule, severity, person_id, status, event_ids, detected_at, town, hazard, program, period = row
    return Alert(aid, rule, severity, person_id, status, tuple(loads(event_ids)), detected_at, town, hazard,
                 program, period)


def alert_message(alert: Alert) -> dict[str, Any]:
    """The ``careledger.alerts`` message of an alert change (``Alert.to_dict`` without ``asdict``)."""
    out: dict[str, Any] = {
        "alert_id": alert.alert_id, "rule": alert.rule, "severity": alert.severity,
        "person_id": alert.person_id, "status": alert.status, "event_ids": list(alert.event_ids),
        "detected_at": alert.detected_at,
    }
    for name in ("town", "hazard", "program", "period"):
        value = getattr(alert, name)
        if value is not None:
            out[name] = value
    return out


def warning_row(w: Warning) -> tuple[Any, ...]:
    return (w.person_id, w.rule, w.need_id or "", w.since, w.need, w.detail)
