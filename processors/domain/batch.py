"""The main projection's fold over one batch: which state the batch needs, and the rows it changes.

A projection is a policy (as in the ``eventsourcing`` library): given events and the state they
touch, say what to write; the runtime (``processors.runtime``) owns positions, de-duplication,
loading and the commit.  For the main read model that policy is:

* :func:`plan` - from the events alone, the state rows the batch can touch: person cores (the
  whole core only of persons with an event other than a payment or a reversal: those two read
  the end date alone; they were 68 % of the events - docs/performance.md, "Persons who were only
  paid"), the payment groups (person, program, period) of its payments, the payments its
  reversals name, the payments an earlier end date can reach, pending reversals, needs, alerts.
  A store loads exactly those (``StateLoader``), so the work per event never grows with the
  person's history - except a reversal's: the payment it names is found among its person's
  payments (the SQL store reads the person's ledger index for it; reversals are rare).
* :func:`fold` - runs the pure :class:`~processors.domain.reducer.Projector` over the events and
  returns a :class:`BatchChanges`: one ledger entry per event (what ``/api/counts`` reads), the
  payments whose reversal changed, changed person cores, needs, pending reversals, alerts and
  their outbox messages, alert actions and the standing warnings of changed persons and needs,
  and the ``traceparent`` each event arrived with (``traces``: the store gives the outbox rows an
  event causes a span of that trace).

Forgotten persons (events erased by ``processors.privacy``: a tombstone id and ``erased: true``)
are counted - the ledger keeps history - but get no core, alert, need, warning or outbox row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from processors.domain.aggregate import Need, PersonAggregate
from processors.domain.calendar import event_date
from processors.domain.counts import COUNTED
from processors.domain.model import (
    Alert,
    AlertAction,
    Consumed,
    Event,
    FactDelta,
    FactKey,
    Warning,
    WarningSnooze,
)
from processors.domain.reducer import Projector
from processors.domain.rules_config import RulesConfig
from processors.domain.vocabulary import ENDING_STATUSES
from processors.domain.warnings import need_warnings, person_warnings

PAYMENT = "payment.disbursed"
REVERSAL = "payment.reversed"
NEED_EVENTS = frozenset({"need.registered", "service.delivered", "job.placed"})


@dataclass(slots=True)
class StatePlan:
    """The state rows a batch can touch (all sets: a loader answers each in one query)."""

    persons: set[str] = field(default_factory=set)
    # of ``persons``, those with an event that reads or changes more of the core than the end date
    # (anything but a payment or a reversal): the others may be loaded with the end date alone
    cores: set[str] = field(default_factory=set)
    groups: set[tuple[str, str, str]] = field(default_factory=set)  # (person, program, period)
    payments: set[tuple[str, str]] = field(default_factory=set)  # (person, payment id) a reversal names
    pending: set[str] = field(default_factory=set)  # payment ids that may have a pending reversal
    ends: dict[str, str] = field(default_factory=dict)  # person -> first period an end date may reach
    needs: set[tuple[str, str]] = field(default_factory=set)  # (person, need_id)


@dataclass(slots=True)
class LedgerEntry:
    """One event as the ledger keeps it: the count fact it contributes (``kind``/``key``, None for
    types that are not counted) and, for payments, what the payment rules need later.

    Not frozen, though treated as a value (changed only through ``dataclasses.replace``): one is
    built per event, and a 16-field frozen dataclass took 2.9 µs to build against 0.9 unfrozen
    (timeit; docs/performance.md, "the fold's own cost")."""

    event_id: str
    type: str
    kind: str | None
    key: str
    town: str
    date: str
    person_id: str
    occurred_at: str
    payload: dict[str, Any]
    period: str | None = None
    amount_fen: int = 0
    positions: int = 0
    counted: bool = False
    reversed_by: str | None = None
    partition: int = -1
    offset: int = -1


@dataclass(slots=True)
class BatchChanges:
    """Everything one batch writes (besides positions, which the runtime adds)."""

    ledger: list[LedgerEntry] = field(default_factory=list)
    reversals: dict[str, tuple[str, str]] = field(default_factory=dict)  # earlier payment id -> (its day, reversed_by)
    persons: dict[str, PersonAggregate] = field(default_factory=dict)  # changed cores
    needs: dict[tuple[str, str], Need] = field(default_factory=dict)
    pending: dict[str, tuple[str, str] | None] = field(default_factory=dict)  # id -> (reversal, person) | gone
    alerts: dict[str, tuple[Alert, int]] = field(default_factory=dict)  # last content, offset that set it
    outbox: list[tuple[Alert, int, int]] = field(default_factory=list)  # every change, partition, offset
    alert_actions: list[AlertAction] = field(default_factory=list)
    snoozes: list[WarningSnooze] = field(default_factory=list)
    person_warnings: dict[str, list[Warning]] = field(default_factory=dict)  # person -> standing warnings
    need_warnings: dict[tuple[str, str], list[Warning]] = field(default_factory=dict)
    # (partition, offset) -> the W3C traceparent the event arrived with (events of persons, with one):
    # the outbox rows the event causes (``outbox``, and warning notices of its person) continue its trace
    traces: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def applied(self) -> int:
        return len(self.ledger)


def is_erased(event: Event) -> bool:
    return bool(event.get("erased"))


def plan(events: list[Event]) -> StatePlan:
    """The state rows ``events`` can touch (see the module docstring)."""
    out = StatePlan()
    for event in events:
        person = event.get("person_id")
        if not person:
            continue
        out.persons.add(person)
        kind, payload = event["type"], event["payload"]
        if kind != PAYMENT and kind != REVERSAL:
            out.cores.add(person)
        if kind == PAYMENT:
            out.groups.add((person, payload["program"], payload["period"]))
            out.pending.add(event["event_id"])
        elif kind == REVERSAL:
            out.payments.add((person, payload["reverses"]))
            out.pending.add(payload["reverses"])
        elif kind == "person.status_changed" and payload["status"] in ENDING_STATUSES:
            first = payload["effective_date"][:7]
            if first < out.ends.get(person, "9999-99"):
                out.ends[person] = first
        elif kind in NEED_EVENTS and payload.get("need_id"):
            out.needs.add((person, payload["need_id"]))
    return out


def _ledger_entry(rec: Consumed, event: Event, day: str, counted: bool,
                  reversed_by: str | None) -> LedgerEntry:
    payload = event["payload"]
    counted_as = COUNTED.get(event["type"])
    kind, key_field = counted_as if counted_as is not None else (None, None)
    return LedgerEntry(
        event_id=event["event_id"], type=event["type"], kind=kind,
        key="" if key_field is None else str(payload.get(key_field, "")),
        town=event["town"], date=day, person_id=event.get("person_id") or "",
        occurred_at=event["occurred_at"], payload=payload, period=payload.get("period"),
        amount_fen=int(payload.get("amount_fen") or 0), positions=int(payload.get("positions") or 0),
        counted=counted, reversed_by=reversed_by, partition=rec.partition, offset=rec.offset,
    )


def fold(projector: Projector, aggregates: dict[str, PersonAggregate], records: list[Consumed]) -> BatchChanges:
    """Apply fresh, de-duplicated ``records`` (events not None) to ``aggregates`` (partial views
    loaded for :func:`plan`; updated in place, new persons added) and say what to write."""
    out = BatchChanges()
    in_batch: dict[str, int] = {}  # payment id -> index of its ledger entry in this batch
    touched_needs: dict[str, set[str]] = {}
    core_changed: set[str] = set()
    apply = projector.apply
    for rec in records:
        event = rec.event
        assert event is not None
        person = event.get("person_id") or None
        erased = is_erased(event)
        agg, effects = apply(aggregates.get(person) if person else None, event)
        if person is not None and agg is not None:
            aggregates[person] = agg
        day = event_date(event["occurred_at"])
        # the event's own fact (a reversal's negative delta belongs to its payment, not to it)
        counted = event["type"] in COUNTED and _counts_itself(effects.fact_deltas)
        reversed_by = None
        if event["type"] == PAYMENT and agg is not None:
            reversed_by = agg.payments[event["event_id"]].reversed_by
        if event["type"] == PAYMENT:
            in_batch[event["event_id"]] = len(out.ledger)
        out.ledger.append(_ledger_entry(rec, event, day, counted, reversed_by))
        if agg is None or person is None:
            continue
        for payment_id in effects.payments_changed:
            if payment_id == event["event_id"]:
                continue
            payment = agg.payments[payment_id]
            index = in_batch.get(payment_id)
            if index is None:
                out.reversals[payment_id] = (payment.date, payment.reversed_by or "")
            else:
                entry = out.ledger[index]
                out.ledger[index] = _replace_reversal(entry, payment.reversed_by)
        for payment_id in effects.pending_changed:
            reversal = agg.pending_reversals.get(payment_id)
            out.pending[payment_id] = None if reversal is None else (reversal, person)
        if erased:
            continue  # counted, nothing person-level kept
        if rec.trace is not None:
            out.traces[(rec.partition, rec.offset)] = rec.trace
        if effects.person_changed:
            core_changed.add(person)
        for need_id in effects.needs_changed:
            touched_needs.setdefault(person, set()).add(need_id)
        for alert in effects.alerts_changed:
            out.alerts[alert.alert_id] = (alert, rec.offset)
            out.outbox.append((alert, rec.partition, rec.offset))
        out.alert_actions.extend(effects.alert_actions)
        out.snoozes.extend(effects.snoozes)
    rules = projector.rules
    for person in core_changed:
        agg = aggregates[person]
        out.persons[person] = agg
        out.person_warnings[person] = person_warnings(agg, rules)
    for person, need_ids in touched_needs.items():
        agg = aggregates[person]
        for need_id in need_ids:
            out.needs[(person, need_id)] = agg.needs[need_id]
            out.need_warnings[(person, need_id)] = need_warnings(agg, need_id, rules)
    return out


class ReadModel:
    """The main read model as a projection policy (``processors.runtime.contracts.Projection``)."""

    name = "sql"

    def __init__(self, rules: RulesConfig) -> None:
        self.projector = Projector(rules)

    @property
    def rules(self) -> RulesConfig:
        return self.projector.rules

    def plan(self, events: list[Event]) -> StatePlan:
        return plan(events)

    def fold(self, state: dict[str, PersonAggregate], records: list[Consumed]) -> BatchChanges:
        return fold(self.projector, state, records)

    @staticmethod
    def resident_state() -> dict[str, PersonAggregate]:
        """The state a build keeps resident (``processors/runtime/resident.py``): :func:`fold` adds
        new persons and updates the others in place, so after every batch it holds each person's
        whole aggregate - a superset of what :func:`plan` would have loaded."""
        return {}

    def applied(self, changes: BatchChanges) -> int:
        return changes.applied


def _counts_itself(fact_deltas: list[tuple[FactKey, FactDelta]]) -> bool:
    """Whether the event added a fact of its own (a loop: 0.13 µs where ``any`` over a generator took 0.66)."""
    for _key, delta in fact_deltas:
        if delta.events > 0:
            return True
    return False


def _replace_reversal(entry: LedgerEntry, reversed_by: str | None) -> LedgerEntry:
    """A payment of this batch reversed later in the same batch: it stops counting."""
    return replace(entry, reversed_by=reversed_by, counted=entry.counted and reversed_by is None)


__all__ = ["BatchChanges", "LedgerEntry", "ReadModel", "StatePlan", "fold", "is_erased", "plan"]
