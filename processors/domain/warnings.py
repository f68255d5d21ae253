"""Need warnings (需求预警), judged for one person at a date ``as_of``.

Computed on demand from the aggregate (which reflects every event ingested so far), only for
persons whose status is active.  Each rule's "due when" is rewritten as ``since <= as_of`` with
``since`` the first day the warning is due, so boundaries follow the contract's words exactly:

* "more than N days before/after" -> ``since = base + N + 1 days``;
* "on or before as_of + N days"    -> ``since = date - N days``.
"""

from __future__ import annotations

from datetime import date

from processors.domain.aggregate import PersonAggregate
from processors.domain.calendar import add_days, month_start, previous_month
from processors.domain.model import Warning
from processors.domain.rules_config import RulesConfig
from processors.domain.vocabulary import NURSING_PROGRAM

ACTIVE = "active"
VISIT_OVERDUE = "visit_overdue"
NEED_UNMET = "need_unmet"
CERTIFICATE_EXPIRING = "certificate_expiring"
NURSING_MISSING = "nursing_subsidy_missing"


def evaluate_warnings(agg: PersonAggregate, as_of: date, rules: RulesConfig) -> list[Warning]:
    """Warnings due at ``as_of``, in a stable order (rule, then ``need_id``)."""
    if agg.status != ACTIVE:
        return []
    found: list[Warning] = []
    if rules.enabled(VISIT_OVERDUE):
        found += _visit_overdue(agg, as_of, rules)
    if rules.enabled(NEED_UNMET):
        found += _need_unmet(agg, as_of, rules)
    if rules.enabled(CERTIFICATE_EXPIRING):
        found += _certificate_expiring(agg, as_of, rules)
    if rules.enabled(NURSING_MISSING):
        found += _nursing_missing(agg, as_of, rules)
    return found


def _severe(agg: PersonAggregate, max_grade: int) -> bool:
    return agg.grade is not None and agg.grade <= max_grade


def _visit_overdue(agg: PersonAggregate, as_of: date, rules: RulesConfig) -> list[Warning]:
    if not (agg.hardship or _severe(agg, rules.visit_overdue_max_grade)):
        return []
    base = agg.last_home_visit or agg.registered_on
    if base is None:
        return []
    since = add_days(base, rules.visit_overdue_days + 1)
    if since > as_of:
        return []
    detail = f"last home visit {base}" if agg.last_home_visit else f"no home visit since registration {base}"
    return [Warning(VISIT_OVERDUE, agg.person_id, since.isoformat(), town=agg.town, detail=detail)]


def _need_unmet(agg: PersonAggregate, as_of: date, rules: RulesConfig) -> list[Warning]:
    found: list[Warning] = []
    for need_id in sorted(agg.needs):
        need = agg.needs[need_id]
        if need.fulfilled_on is not None or need.need is None or need.registered_on is None:
            continue
        deadline = rules.need_deadline_days.get(need.need)
        if deadline is None:
            continue
        since = add_days(need.registered_on, deadline + 1)
        if since <= as_of:
            found.append(Warning(
                NEED_UNMET, agg.person_id, since.isoformat(), town=agg.town, need_id=need_id,
                need=need.need, detail=f"registered {need.registered_on}, deadline {deadline} days",
            ))
    return found


def _certificate_expiring(agg: PersonAggregate, as_of: date, rules: RulesConfig) -> list[Warning]:
    if agg.certificate_expires is None:
        return []
    since = add_days(agg.certificate_expires, -rules.certificate_expiring_days)
    if since > as_of:
        return []
    return [Warning(
        CERTIFICATE_EXPIRING, agg.person_id, since.isoformat(), town=agg.town,
        detail=f"certificate expires {agg.certificate_expires}",
    )]


def _nursing_missing(agg: PersonAggregate, as_of: date, rules: RulesConfig) -> list[Warning]:
    if not _severe(agg, rules.nursing_subsidy_max_grade) or agg.registered_on is None:
        return []
    period = previous_month(as_of)
    if agg.registered_on >= f"{period}-01":  # registered on/after the first day of that month
        return []
    for payment_id in agg.payment_group(NURSING_PROGRAM, period):
        if agg.payments[payment_id].reversed_by is None:
            return []
    return [Warning(
        NURSING_MISSING, agg.person_id, month_start(as_of).isoformat(), town=agg.town,
        detail=f"no nursing_subsidy payment for {period}",
    )]
