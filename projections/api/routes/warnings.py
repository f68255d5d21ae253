"""Need warnings (需求预警, policy ``person_level``): the work queue at ``as_of``, its summary, and
putting a warning aside (snooze) with a reason.

A warning is cleared by the event that fulfils it (a visit, a service, a payment - its reason says
which), not by a button; what a caseworker can do is snooze it until a date, with a reason.  Like
alert actions, the snooze is a ``warning.snoozed`` event on the log first and only then recorded in
the store (``projections/api/alert_actions.py``), so history and replays keep it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from careledger import clock
from processors.domain.texts import warning_reason
from projections.api.alert_actions import record_snooze_event
from projections.api.context import Api
from projections.api.guard import (
    Caller,
    audit_listed,
    audit_person,
    not_an_id_number,
    require_admin_for_snapshot,
    require_person,
    towns_asked,
)
from projections.api.models import SnoozeIn, Warning, Warnings, WarningSummary
from projections.api.params import (
    MAX_LIMIT,
    AsOfDate,
    Limit,
    Offset,
    PersonId,
    Rule,
    Snapshot,
    StrictBool,
    Town,
)
from projections.api.problems import Problem, invalid, responses
from projections.api.routes.aggregates import today_shanghai

router = APIRouter(tags=["person level"])
WarningId = Annotated[str, Path(pattern="^W[0-9a-f]{20}$", description="the warning_id")]
#: how far ahead a warning may be put aside: a snooze is a pause, not a way to drop a warning
MAX_SNOOZE_DAYS = 366


@router.get("/api/warnings", summary="Need warnings (需求预警) at a date", response_model=Warnings,
            response_model_exclude_unset=True, responses=responses(404))
def warnings(
    api: Api,
    caller: Caller,
    request: Request,
    as_of: Annotated[AsOfDate | None, Query(description="default: today in Asia/Shanghai")] = None,
    rule: Rule = None,
    person_id: PersonId = None,
    limit: Limit = 100,
    offset: Offset = 0,
    snapshot: Snapshot = None,
    snoozed: Annotated[StrictBool, Query(description="true: also the snoozed ones (marked)")] = False,
    town: Town = None,  # only persons now living there (within the caller's towns)
) -> dict[str, Any]:
    not_an_id_number(person_id)
    require_admin_for_snapshot(caller, snapshot)
    source = api.source(snapshot, person_level=True)
    if person_id is not None:
        require_person(caller, source, person_id)
    when = as_of or today_shanghai()
    answer = source.warnings(when, rule=rule, person_id=person_id, towns=towns_asked(caller, town), limit=limit,
                             offset=offset, snoozed_too=snoozed, identity=True)
    audit_listed(request, (item["person_id"] for item in answer["items"]))
    for item in answer["items"]:
        item.update(warning_reason(item, api.rules).as_fields())
    return {"as_of": when.isoformat(), **answer}


@router.get("/api/warnings/summary", summary="The warning queue at a glance: per rule and town",
            response_model=WarningSummary, responses=responses())
def warnings_summary(
    api: Api, caller: Caller,
    as_of: Annotated[AsOfDate | None, Query(description="default: today in Asia/Shanghai")] = None,
) -> dict[str, Any]:
    when = as_of or today_shanghai()
    rows = api.store.warnings_summary(when, towns=caller.town_filter())
    return {"as_of": when.isoformat(), "total": sum(r["due"] for r in rows), "rows": rows}


@router.post("/api/warnings/{warning_id}/snooze", summary="Put a due warning aside until a date, with a reason",
             response_model=Warning, response_model_exclude_unset=True, responses=responses(404, 503))
def snooze(api: Api, caller: Caller, request: Request, warning_id: WarningId,
           body: SnoozeIn) -> dict[str, Any]:
    not_an_id_number(body.person_id, where="body")
    audit_person(request, body.person_id)  # not in the URL: name the person (refusals too)
    today = today_shanghai()
    if not today < body.until <= today + timedelta(days=MAX_SNOOZE_DAYS):
        raise invalid("until", f"must be after today ({today}) and at most {MAX_SNOOZE_DAYS} days ahead",
                      where="body")
    store = api.store
    require_person(caller, store, body.person_id)
    due = store.warnings(today, person_id=body.person_id, limit=MAX_LIMIT, snoozed_too=True)["items"]
    found = next((w for w in due if w["warning_id"] == warning_id), None)
    if found is None:
        raise Problem(404, "no warning with this warning_id is due for this person today")
    at = clock.utc_now().isoformat(timespec="milliseconds")
    until = body.until.isoformat()
    try:  # on the log first: the store only records what the log already holds
        record_snooze_event(warning=found, until=until, reason=body.reason, actor=caller.name or "", at=at,
                            publisher=api.publishers.get())
    except Problem:
        raise
    except Exception:
        raise Problem(503, "the event log (Kafka) did not acknowledge the snooze; retry later") from None
    store.record_snooze(warning_id, body.person_id, until, body.reason, caller.name or "", at)
    snoozed = {"until": until, "reason": body.reason, "by": caller.name or "", "at": at}
    return {**found, "snoozed": snoozed, **warning_reason(found, api.rules).as_fields()}
