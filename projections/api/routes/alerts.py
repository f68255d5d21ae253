"""Risk alerts (风险隐患, policy ``person_level``): the work queue, its summary, and the actions on
an alert - assign, acknowledge, resolve, each with a note.

Every item says, in Chinese and English, what is due and what would clear it
(``processors/domain/texts.py``), and names the person (name, phone) for the callers allowed to see
them: caseworkers, who only ever see persons of their towns, and admins.  An action is published as
an ``alert.handled`` event first and recorded in the store only once Kafka acknowledged it
(``projections/api/alert_actions.py``).  The live stream of alert changes is
``projections/api/alert_stream.py``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request

from careledger import clock
from processors.domain.texts import alert_reason
from projections.api.alert_actions import record_alert_action_event
from projections.api.auth import Principal
from projections.api.context import Api
from projections.api.guard import (
    Caller,
    audit_listed,
    audit_person,
    not_an_id_number,
    person_town,
    require_admin_for_snapshot,
    require_person,
    towns_asked,
)
from projections.api.models import ActionIn, Alert, Alerts, AlertSummary, AssignIn
from projections.api.params import Limit, Offset, PersonId, Rule, Snapshot, StrictBool, Town
from projections.api.problems import Problem, responses

log = logging.getLogger("careledger.api")
router = APIRouter(tags=["person level"])
AlertId = Annotated[str, Path(max_length=255, description="the alert_id")]


@router.get("/api/alerts", summary="Risk alerts (风险隐患)", response_model=Alerts,
            response_model_exclude_unset=True, responses=responses(404))
def alerts(
    api: Api,
    caller: Caller,
    request: Request,
    rule: Rule = None,
    person_id: PersonId = None,
    status: Annotated[Literal["open", "resolved"] | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    snapshot: Snapshot = None,
    sort: Annotated[Literal["newest", "queue"], Query(
        description="newest: detected last first; queue: critical first, then the longest waiting")] = "newest",
    assigned_to: Annotated[str | None, Query(max_length=200, description="only alerts assigned to this name")] = None,
    escalated: Annotated[StrictBool | None, Query(description="only escalated (true) or not escalated (false)")] = None,
    town: Town = None,  # only persons now living there (within the caller's towns)
) -> dict[str, Any]:
    not_an_id_number(person_id)
    require_admin_for_snapshot(caller, snapshot)
    source = api.source(snapshot, person_level=True)
    if person_id is not None:
        require_person(caller, source, person_id)
    answer = source.alerts(rule=rule, person_id=person_id, status=status, towns=towns_asked(caller, town), limit=limit,
                           offset=offset, sort=sort, assigned_to=assigned_to, escalated=escalated, identity=True)
    audit_listed(request, (item["person_id"] for item in answer["items"]))
    for item in answer["items"]:
        item.update(alert_reason(item, api.rules).as_fields())
    return answer


@router.get("/api/alerts/summary", summary="The alert queue at a glance: per rule and town",
            response_model=AlertSummary, responses=responses())
def alerts_summary(api: Api, caller: Caller,
                   status: Annotated[Literal["open", "resolved"], Query()] = "open") -> dict[str, Any]:
    rows = api.store.alerts_summary(towns=caller.town_filter(), status=status)
    return {"status": status, "total": sum(r["count"] for r in rows), "rows": rows}


def _act(api: Api, caller: Principal, request: Request, alert_id: str, action: str, note: str | None,
         assignee: str | None = None) -> dict[str, Any]:
    store = api.store
    found = store.alert(alert_id)
    if found is None:
        raise Problem(404, "no alert with this alert_id")
    audit_person(request, found["person_id"])  # not in the URL: name the person (refusals too)
    town = person_town(store, found["person_id"])  # access follows the person's current town
    if not caller.is_admin and not caller.may_see_town(town):
        raise Problem(403, "the alert is about a person outside the towns of this token")
    at = clock.utc_now().isoformat(timespec="milliseconds")
    publisher = api.publishers.get()
    try:  # on the log first: the store only records what the log already holds
        record_alert_action_event(action=action, alert=found, actor=caller.name or "", role=caller.role or "",
                                  note=note, at=at, town=town or found.get("town") or "", publisher=publisher,
                                  assignee=assignee)
    except Exception as exc:
        log.warning("alert %s %s not recorded: %s", alert_id, action, type(exc).__name__)
        raise Problem(503, "the event log (Kafka) did not acknowledge the action; retry later") from None
    alert = store.record_alert_action(alert_id, caller.name, at, action, assignee)
    if alert is None:
        raise Problem(404, "no alert with this alert_id")
    alert.update(alert_reason(alert, api.rules).as_fields())
    return alert


ACTION_ERRORS = responses(404, 503)


@router.post("/api/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert", response_model=Alert,
             response_model_exclude_unset=True, responses=ACTION_ERRORS)
def acknowledge(api: Api, caller: Caller, request: Request, alert_id: AlertId,
                body: Annotated[ActionIn | None, Body()] = None) -> dict[str, Any]:
    return _act(api, caller, request, alert_id, "acknowledge", body.note if body else None)


@router.post("/api/alerts/{alert_id}/resolve", summary="Resolve an alert", response_model=Alert,
             response_model_exclude_unset=True, responses=ACTION_ERRORS)
def resolve(api: Api, caller: Caller, request: Request, alert_id: AlertId,
            body: Annotated[ActionIn | None, Body()] = None) -> dict[str, Any]:
    return _act(api, caller, request, alert_id, "resolve", body.note if body else None)


@router.post("/api/alerts/{alert_id}/assign", summary="Assign an alert to someone (with a note)",
             response_model=Alert, response_model_exclude_unset=True, responses=ACTION_ERRORS)
def assign(api: Api, caller: Caller, request: Request, alert_id: AlertId, body: AssignIn) -> dict[str, Any]:
    return _act(api, caller, request, alert_id, "assign", body.note, body.assignee)
