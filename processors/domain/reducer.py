"""The projector: folds one validated event into a person's aggregate and says what changed.

Pure and in-place: ``apply`` mutates the aggregate it is given (no per-event copies; callers own
the aggregate) and returns it with the :class:`EventEffects` saying what changed.  The aggregate
may be a *partial view* (``processors.domain.batch`` loads, per batch, only the payment groups,
needs, pending reversals and alerts its events can touch), so work per event is bounded by the
person's relevant state - one payment group, or the payments an earlier end date reaches -
never by the length of the person's history.

A handler returns whether the person's *core* (profile, status, dates) changed; changes to
payments, pending reversals and needs are listed in the effects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processors.domain.aggregate import HazardVisit, Need, Payment, PersonAggregate
from processors.domain.alerts import (
    Subject,
    end_subjects,
    hazard_subjects,
    payment_subjects,
    settle,
)
from processors.domain.calendar import event_date, instant_key
from processors.domain.counts import event_fact, negated
from processors.domain.model import AlertAction, Event, EventEffects, FactDelta, FactKey, WarningSnooze
from processors.domain.rules_config import RulesConfig
from processors.domain.vocabulary import ENDING_STATUSES, HOME_VISIT

ACTIVE = "active"
PROFILE_PAYLOAD_FIELDS = ("category", "grade", "birth_date", "hardship", "certificate_expires", "name", "phone")

Handler = Callable[[PersonAggregate, Event, str, EventEffects], bool]


class Projector:
    """Applies events to :class:`PersonAggregate` s under one :class:`RulesConfig`."""

    def __init__(self, rules: RulesConfig) -> None:
        self.rules = rules
        self._handlers: dict[str, Handler] = {
            "person.registered": self._registered,
            "person.profile_changed": self._profile_changed,
            "person.status_changed": self._status_changed,
            "visit.completed": self._visit,
            "payment.disbursed": self._payment,
            "payment.reversed": self._reversal,
            "need.registered": self._need,
            "service.delivered": self._fulfilment,
            "job.placed": self._fulfilment,
            "alert.handled": self._alert_handled,
            "warning.snoozed": self._warning_snoozed,
        }

    def apply(self, agg: PersonAggregate | None, event: Event) -> tuple[PersonAggregate | None, EventEffects]:
        """Fold ``event`` into ``agg`` (None: the person is new; for ``job.posted`` it stays None)."""
        effects = EventEffects()
        person_id = event.get("person_id")
        if not person_id:  # job.posted: counted, no person state
            fact = event_fact(event)
            if fact is not None:
                effects.fact_deltas.append(fact)
            return agg, effects
        created = agg is None
        if agg is None:
            agg = PersonAggregate(person_id=person_id)
        elif agg.person_id != person_id:
            raise ValueError(f"event {event['event_id']} is for another person than the aggregate given")
        handler = self._handlers.get(event["type"])
        changed = handler(agg, event, event_date(event["occurred_at"]), effects) if handler else False
        if created or changed:
            effects.person_changed = person_id
        return agg, effects

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _count(event: Event, day: str, effects: EventEffects) -> None:
        fact = event_fact(event, day)
        if fact is not None:
            effects.fact_deltas.append(fact)

    @staticmethod
    def _emit(agg: PersonAggregate, subjects: list[Subject], effects: EventEffects) -> bool:
        """Store and report the alerts whose content differs from what was last emitted."""
        changed = False
        for aid, current in subjects:
            previous = agg.alerts.get(aid)
            kept = settle(previous, current)
            if kept is not None and kept != previous:
                agg.alerts[aid] = kept
                effects.alerts_changed.append(kept)
                changed = True
        return changed

    @staticmethod
    def _profile(agg: PersonAggregate, values: dict[str, Any], stamp: str) -> bool:
        """Per-field latest-stamp-wins, so out-of-order profile events converge."""
        changed = False
        stamps = agg.profile_stamps
        for name, value in values.items():
            current = stamps.get(name)
            if current is None or stamp > current:
                stamps[name] = stamp
                setattr(agg, name, value)
                changed = True
        return changed

    @staticmethod
    def _status(agg: PersonAggregate, status: str, effective: str, stamp: str) -> bool:
        if agg.status_stamp is not None and stamp <= agg.status_stamp:
            return False
        agg.status, agg.status_effective, agg.status_stamp = status, effective, stamp
        return True

    # --- handlers (return: did the aggregate change) ---------------------------------------------

    @staticmethod
    def _alert_handled(agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        """Handling is bookkeeping on the alert row, not evidence: the rules' view is unchanged, so
        a later event that changes the evidence re-evaluates the alert as usual."""
        payload = event["payload"]
        effects.alert_actions.append(AlertAction(payload["alert_id"], payload["action"], payload["by"],
                                                 event["occurred_at"], payload.get("note"), payload.get("assignee"),
                                                 event["event_id"]))
        return False

    @staticmethod
    def _warning_snoozed(agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        payload = event["payload"]
        effects.snoozes.append(WarningSnooze(payload["warning_id"], agg.person_id, payload["until"],
                                             payload["reason"], payload["by"], event["occurred_at"]))
        return False

    def _registered(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        self._count(event, day, effects)
        payload = event["payload"]
        moment = instant_key(event["occurred_at"])
        values = {"town": event["town"], "village": event.get("village")}
        values.update((name, payload[name]) for name in PROFILE_PAYLOAD_FIELDS if name in payload)
        changed = self._profile(agg, values, f"{moment}|{event['event_id']}")
        if agg.registered_on is None or day < agg.registered_on:
            agg.registered_on = day
            changed = True
        # registration puts the person in force as active from its date
        return self._status(agg, ACTIVE, day, f"{day}|{moment}|{event['event_id']}") or changed

    def _profile_changed(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        payload = event["payload"]
        values = {"town": event["town"], "village": event.get("village")}
        values.update((name, payload[name]) for name in PROFILE_PAYLOAD_FIELDS if name in payload)
        return self._profile(agg, values, f"{instant_key(event['occurred_at'])}|{event['event_id']}")

    def _status_changed(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        payload = event["payload"]
        status, effective, event_id = payload["status"], payload["effective_date"], event["event_id"]
        changed = self._status(agg, status, effective, f"{effective}|{instant_key(event['occurred_at'])}|{event_id}")
        if status in ENDING_STATUSES:
            current = agg.end_stamp
            if current is None or f"{effective}|{event_id}" < current:
                agg.end_date, agg.end_event_id, agg.end_occurred_at = effective, event_id, event["occurred_at"]
                self._emit(agg, end_subjects(agg, self.rules), effects)
                changed = True
        return changed

    def _visit(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        self._count(event, day, effects)
        payload = event["payload"]
        changed = False
        if payload["visit_kind"] == HOME_VISIT and (agg.last_home_visit is None or day > agg.last_home_visit):
            agg.last_home_visit = day
            changed = True
        hazards = payload.get("hazards")
        event_id = event["event_id"]
        if hazards and event_id not in agg.hazard_visits:
            agg.hazard_visits[event_id] = HazardVisit(tuple(hazards), event["occurred_at"], event["town"])
            self._emit(agg, hazard_subjects(agg, event_id, self.rules), effects)
        return changed

    def _payment(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        event_id = event["event_id"]
        if event_id in agg.payments:  # re-sent: the runtime should have dropped it already
            return False
        payload = event["payload"]
        reversed_by = agg.pending_reversals.pop(event_id, None)
        if reversed_by is not None:
            effects.pending_changed.append(event_id)
        effects.payments_changed.append(event_id)
        agg.add_payment(event_id, Payment(
            payload["program"], payload["period"], payload["amount_fen"], day, event["town"],
            event["occurred_at"], reversed_by,
        ))
        if reversed_by is None:  # reversed before it arrived: contributes nothing
            self._count(event, day, effects)
        self._emit(agg, payment_subjects(agg, event_id, self.rules), effects)
        return False

    def _reversal(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        target, reversal_id = event["payload"]["reverses"], event["event_id"]
        payment = agg.payments.get(target)
        if payment is None:  # payment not seen (yet): keep the smallest reversal id pending
            pending = agg.pending_reversals.get(target)
            if pending is not None and pending <= reversal_id:
                return False
            agg.pending_reversals[target] = reversal_id
            effects.pending_changed.append(target)
            return False
        if payment.reversed_by is not None:  # already reversed: only the recorded id may change
            if payment.reversed_by <= reversal_id:
                return False
            payment.reversed_by = reversal_id
            effects.payments_changed.append(target)
            return False
        payment.reversed_by = reversal_id
        effects.payments_changed.append(target)
        key = FactKey("payment", payment.program, payment.town, payment.date, agg.person_id)
        effects.fact_deltas.append((key, negated(FactDelta(events=1, amount_fen=payment.amount_fen))))
        self._emit(agg, payment_subjects(agg, target, self.rules), effects)
        return False

    def _need(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        self._count(event, day, effects)
        payload, event_id = event["payload"], event["event_id"]
        need = agg.needs.get(payload["need_id"])
        if need is None:
            need = agg.needs[payload["need_id"]] = Need()
        if need.registered_on is not None and (need.registered_on, need.registered_by) <= (day, event_id):
            return False
        need.need, need.registered_on, need.registered_by = payload["need"], day, event_id
        effects.needs_changed.append(payload["need_id"])
        return False

    def _fulfilment(self, agg: PersonAggregate, event: Event, day: str, effects: EventEffects) -> bool:
        self._count(event, day, effects)
        need_id, event_id = event["payload"].get("need_id"), event["event_id"]
        if not need_id:
            return False
        need = agg.needs.get(need_id)
        if need is None:  # fulfilment before its need.registered
            need = agg.needs[need_id] = Need()
        if need.fulfilled_on is not None and (need.fulfilled_on, need.fulfilled_by) <= (day, event_id):
            return False
        need.fulfilled_on, need.fulfilled_by = day, event_id
        effects.needs_changed.append(need_id)
        return False
