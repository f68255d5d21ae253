"""Alert rules (风险隐患), computed from a person's aggregate only.

Because the inputs are order-independent aggregate fields, the alerts are too: a replay, or the
same events in another order, gives the same alerts.  Each rule is evaluated per *subject*
(group of payments, payment, visit+hazard) so the reducer can re-evaluate only the subjects an
event touches; :func:`evaluate_alerts` evaluates every subject and gives the same answer.

Choices where the contract is silent:

* An alert, once it existed, never disappears: a subject that stops firing (rule switched off,
  range edited) keeps its last content with ``status = "resolved"``.
* ``duplicate_payment`` exists as soon as a program+period has two payment events; it is open
  while more than one of them is not reversed, resolved otherwise (so a reversal arriving before
  the duplicate gives a resolved alert, the same end state as the reverse arrival order).
* ``payment_after_end`` and ``amount_out_of_range`` are resolved when their payment is reversed.
  ``payment_after_end``'s ``event_ids`` are the payment and the status event that set the end date.
* ``visit_hazard`` stays open (the contract names no event that clears a hazard).
* ``town`` is the town of the event behind the alert (the latest payment for a duplicate group),
  not the person's current town, so a move does not rewrite old alerts.
* ``detected_at`` is the latest ``occurred_at`` among ``event_ids`` (as written in the event).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Final

from processors.domain.aggregate import PersonAggregate
from processors.domain.calendar import instant_key, latest, period_start
from processors.domain.model import Alert
from processors.domain.rules_config import RulesConfig

DUPLICATE = "duplicate_payment"
AFTER_END = "payment_after_end"
HAZARD = "visit_hazard"
OUT_OF_RANGE = "amount_out_of_range"
OPEN: Final = "open"
RESOLVED: Final = "resolved"
FALLBACK_HAZARD_SEVERITY = "high"  # CONTRACT §2: "high otherwise" (rules.toml lists every hazard)
ALERT_ID_HEX = 20

Subject = tuple[str, Alert | None]  # (alert_id, the alert if the rule fires now)


def alert_id(rule: str, person_id: str, *subject: str) -> str:
    """Stable id of the alert for ``rule`` about ``subject``: the same across replays."""
    digest = hashlib.sha1("|".join((rule, person_id, *subject)).encode(), usedforsecurity=False)
    return "A" + digest.hexdigest()[:ALERT_ID_HEX]


def _silent(agg: PersonAggregate, rule: str, *subject: str) -> list[Subject]:
    # Only an alert emitted before can need resolving; skip hashing for the common no-alert case.
    return [(alert_id(rule, agg.person_id, *subject), None)] if agg.alerts else []


def duplicate_subject(agg: PersonAggregate, program: str, period: str, rules: RulesConfig) -> list[Subject]:
    payments = agg.payments
    group = [(eid, payments[eid]) for eid in agg.payment_group(program, period)]
    if len(group) < 2 or not rules.enabled(DUPLICATE):
        return _silent(agg, DUPLICATE, program, period)
    live = sum(1 for _, p in group if p.reversed_by is None)
    _, newest = max(group, key=lambda item: (instant_key(item[1].occurred_at), item[0]))
    aid = alert_id(DUPLICATE, agg.person_id, program, period)
    return [(aid, Alert(
        alert_id=aid,
        rule=DUPLICATE,
        severity=rules.rule_severity[DUPLICATE],  # type: ignore[arg-type]
        person_id=agg.person_id,
        status=OPEN if live > 1 else RESOLVED,
        event_ids=tuple(sorted(eid for eid, _ in group)),
        detected_at=newest.occurred_at,
        town=newest.town,
        program=program,
        period=period,
    ))]


def after_end_subject(agg: PersonAggregate, payment_id: str, rules: RulesConfig) -> list[Subject]:
    payment = agg.payments[payment_id]
    if (
        agg.end_date is None
        or period_start(payment.period) <= agg.end_date
        or not rules.enabled(AFTER_END)
    ):
        return _silent(agg, AFTER_END, payment_id)
    aid = alert_id(AFTER_END, agg.person_id, payment_id)
    return [(aid, Alert(
        alert_id=aid,
        rule=AFTER_END,
        severity=rules.rule_severity[AFTER_END],  # type: ignore[arg-type]
        person_id=agg.person_id,
        status=OPEN if payment.reversed_by is None else RESOLVED,
        event_ids=tuple(sorted((payment_id, agg.end_event_id or ""))),
        detected_at=latest([payment.occurred_at, agg.end_occurred_at or payment.occurred_at]),
        town=payment.town,
        program=payment.program,
        period=payment.period,
    ))]


def out_of_range_subject(agg: PersonAggregate, payment_id: str, rules: RulesConfig) -> list[Subject]:
    payment = agg.payments[payment_id]
    bounds = rules.amount_ranges_fen.get(payment.program)
    if bounds is None or bounds[0] <= payment.amount_fen <= bounds[1] or not rules.enabled(OUT_OF_RANGE):
        return _silent(agg, OUT_OF_RANGE, payment_id)
    aid = alert_id(OUT_OF_RANGE, agg.person_id, payment_id)
    return [(aid, Alert(
        alert_id=aid,
        rule=OUT_OF_RANGE,
        severity=rules.rule_severity[OUT_OF_RANGE],  # type: ignore[arg-type]
        person_id=agg.person_id,
        status=OPEN if payment.reversed_by is None else RESOLVED,
        event_ids=(payment_id,),
        detected_at=payment.occurred_at,
        town=payment.town,
        program=payment.program,
        period=payment.period,
    ))]


def hazard_subjects(agg: PersonAggregate, visit_id: str, rules: RulesConfig) -> list[Subject]:
    visit = agg.hazard_visits[visit_id]
    subjects: list[Subject] = []
    for hazard in sorted(set(visit.hazards)):
        if not rules.enabled(HAZARD):
            subjects += _silent(agg, HAZARD, visit_id, hazard)
            continue
        aid = alert_id(HAZARD, agg.person_id, visit_id, hazard)
        subjects.append((aid, Alert(
            alert_id=aid,
            rule=HAZARD,
            severity=rules.hazard_severity.get(hazard, FALLBACK_HAZARD_SEVERITY),  # type: ignore[arg-type]
            person_id=agg.person_id,
            status=OPEN,
            event_ids=(visit_id,),
            detected_at=visit.occurred_at,
            town=visit.town,
            hazard=hazard,
        )))
    return subjects


def payment_subjects(agg: PersonAggregate, payment_id: str, rules: RulesConfig) -> list[Subject]:
    """Every subject a payment (or its reversal) can change."""
    payment = agg.payments[payment_id]
    return (
        duplicate_subject(agg, payment.program, payment.period, rules)
        + after_end_subject(agg, payment_id, rules)
        + out_of_range_subject(agg, payment_id, rules)
    )


def end_subjects(agg: PersonAggregate, rules: RulesConfig) -> list[Subject]:
    """Subjects that depend on the end date (every payment's ``payment_after_end``)."""
    subjects: list[Subject] = []
    for payment_id in agg.payments:
        subjects += after_end_subject(agg, payment_id, rules)
    return subjects


def settle(previous: Alert | None, current: Alert | None) -> Alert | None:
    """The alert to keep for a subject: the current one, or the previous one resolved."""
    if current is not None or previous is None or previous.status == RESOLVED:
        return current if current is not None else previous
    return replace(previous, status=RESOLVED)


def evaluate_alerts(agg: PersonAggregate, rules: RulesConfig) -> dict[str, Alert]:
    """All alerts of the person (sorted by ``alert_id``), including resolved ones."""
    subjects: list[Subject] = []
    groups = sorted({(p.program, p.period) for p in agg.payments.values()})
    for program, period in groups:
        subjects += duplicate_subject(agg, program, period, rules)
    for payment_id in agg.payments:
        subjects += after_end_subject(agg, payment_id, rules)
        subjects += out_of_range_subject(agg, payment_id, rules)
    for visit_id in agg.hazard_visits:
        subjects += hazard_subjects(agg, visit_id, rules)
    result: dict[str, Alert] = {}
    for aid, current in subjects:
        kept = settle(agg.alerts.get(aid), current)
        if kept is not None:
            result[aid] = kept
    for aid, previous in agg.alerts.items():  # subjects no rule speaks about any more
        if aid not in result:
            result[aid] = settle(previous, None)  # type: ignore[assignment]
    return dict(sorted(result.items()))
