"""Need warnings (需求预警), judged for one person at a date ``as_of``.

Judged from the aggregate (which reflects every event ingested so far), only for persons whose
status is active.  Three rules have a due date that does not depend on ``as_of``
(:func:`standing_warnings`): the projection stores it per person and need, and a query at
``as_of`` is ``since <= as_of``.  ``nursing_subsidy_missing`` looks at the month before
``as_of`` and is judged at query time.  Each rule's "due when" is rewritten as ``since <= as_of`` with
``since`` the first day the warning is due, so boundaries follow the contract's words exactly:

* "more than N days before/after" -> ``since = base + N + 1 days``;
* "on or before as_of + N days"    -> ``since = date - N days``.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    """Warnings due at ``as_of``, in a stable order (rule, then ``need_id``).  The reference: the
    SQL store keeps :func:`standing_warnings` per person and asks ``since <= as_of`` instead."""
    if agg.status != ACTIVE:
        return []
    found = [w for w in standing_warnings(agg, agg.needs, rules) if w.since <= as_of.isoformat()]
    found.sort(key=lambda w: (_ORDER[w.rule], w.need_id or ""))
    if rules.enabled(NURSING_MISSING):
        found += _nursing_missing(agg, as_of, rules)
    return found


_ORDER = {VISIT_OVERDUE: 0, NEED_UNMET: 1, CERTIFICATE_EXPIRING: 2, NURSING_MISSING: 3}


def standing_warnings(agg: PersonAggregate, need_ids: Iterable[str], rules: RulesConfig) -> list[Warning]:
    """The warnings whose due date does not depend on ``as_of`` (visit_overdue, need_unmet for the
    given needs, certificate_expiring), each with the first day it is due (``since``), whatever
    the person's status: a reader asks ``status = active and since <= as_of``."""
    found: list[Warning] = []
    if rules.enabled(VISIT_OVERDUE):
        found += _visit_overdue(agg, rules)
    if rules.enabled(NEED_UNMET):
        for need_id in sorted(need_ids):
            found += _need_unmet(agg, need_id, rules)
    if rules.enabled(CERTIFICATE_EXPIRING):
        found += _certificate_expiring(agg, rules)
    return found


def person_warnings(agg: PersonAggregate, rules: RulesConfig) -> list[Warning]:
    """The standing warnings about the person as a whole (not about one of their needs)."""
    return standing_warnings(agg, (), rules)


def need_warnings(agg: PersonAggregate, need_id: str, rules: RulesConfig) -> list[Warning]:
    return _need_unmet(agg, need_id, rules) if rules.enabled(NEED_UNMET) else []


def _severe(agg: PersonAggregate, max_grade: int) -> bool:
    return agg.grade is not None and agg.grade <= max_grade


def _visit_overdue(agg: PersonAggregate, rules: RulesConfig) -> list[Warning]:
    if not (agg.hardship or _severe(agg, rules.visit_overdue_max_grade)):
        return []
    base = agg.last_home_visit or agg.registered_on
    if base is None:
        return []
    since = add_days(base, rules.visit_overdue_days + 1)
    detail = f"last home visit {base}" if agg.last_home_visit else f"no home visit since registration {base}"
    return [Warning(VISIT_OVERDUE, agg.person_id, since.isoformat(), town=agg.town, detail=detail)]


def _need_unmet(agg: PersonAggregate, need_id: str, rules: RulesConfig) -> list[Warning]:
    need = agg.needs.get(need_id)
    if need is None or need.fulfilled_on is not None or need.need is None or need.registered_on is None:
        return []
    deadline = rules.need_deadline_days.get(need.need)
    if deadline is None:
        return []
    since = add_days(need.registered_on, deadline + 1)
    return [Warning(
        NEED_UNMET, agg.person_id, since.isoformat(), town=agg.town, need_id=need_id,
        need=need.need, detail=f"registered {need.registered_on}, deadline {deadline} days",
    )]


def _certificate_expiring(agg: PersonAggregate, rules: RulesConfig) -> list[Warning]:
    if agg.certificate_expires is None:
        return []
    since = add_days(agg.certificate_expires, -rules.certificate_expiring_days)
    return [Warning(
        CERTIFICATE_EXPIRING, agg.person_id, since.isoformat(), town=agg.town,
        detail=f"certificate expires {agg.certificate_expires}",
    )]


def nursing_period(as_of: date) -> str:
    """The month whose nursing_subsidy payment ``nursing_subsidy_missing`` looks for at ``as_of``."""
    return previous_month(as_of)


def _nursing_missing(agg: PersonAggregate, as_of: date, rules: RulesConfig) -> list[Warning]:
    if not _severe(agg, rules.nursing_subsidy_max_grade) or agg.registered_on is None:
        return []
    period = nursing_period(as_of)
    if agg.registered_on >= f"{period}-01":  # registered on/after the first day of that month
        return []
    for payment_id in agg.payment_group(NURSING_PROGRAM, period):
        if agg.payments[payment_id].reversed_by is None:
            return []
    return [Warning(
        NURSING_MISSING, agg.person_id, month_start(as_of).isoformat(), town=agg.town,
        detail=f"no nursing_subsidy payment for {period}", period=period,
    )]
