"""Risk alerts (风险隐患, policy ``person_level``): list, acknowledge, resolve.

Acknowledging or resolving is published as an ``alert.handled`` event first and recorded in the
store only once Kafka acknowledged it (``projections/api/alert_actions.py``).  The live stream of
alert changes is ``projections/api/alert_stream.py``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query

from projections.api.alert_actions import record_alert_action_event
from projections.api.auth import Principal
from projections.api.context import Api
from projections.api.guard import Caller, not_an_id_number, person_town, require_person
from projections.api.models import ActionIn, Alert, Alerts
from projections.api.params import Limit, Offset, PersonId, Rule, Snapshot
from projections.api.problems import Problem, responses

log = logging.getLogger("careledger.api")
router = APIRouter(tags=["person level"])
AlertId = Annotated[str, Path(max_length=255, description="the alert_id")]


@router.get("/api/alerts", summary="Risk alerts (风险隐患)", response_model=Alerts,
            response_model_exclude_unset=True, responses=responses(404))
def alerts(
    api: Api,
    caller: Caller,
    rule: Rule = None,
    person_id: PersonId = None,
    status: Annotated[Literal["open", "resolved"] | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    snapshot: Snapshot = None,
) -> dict[str, Any]:
    not_an_id_number(person_id)
    source = api.source(snapshot, person_level=True)
    if person_id is not None:
        require_person(caller, source, person_id)
    return source.alerts(rule=rule, person_id=person_id, status=status, towns=caller.town_filter(),
                         limit=limit, offset=offset)


def _act(api: Api, caller: Principal, alert_id: str, body: ActionIn | None, resolve: bool) -> dict[str, Any]:
    store = api.store
    found = store.alert(alert_id)
    if found is None:
        raise Problem(404, "no alert with this alert_id")
    town = found.get("town") or person_town(store, found["person_id"])
    if not caller.is_admin and not caller.may_see_town(town):
        raise Problem(403, "the alert is about a person outside the towns of this token")
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    action = "resolve" if resolve else "acknowledge"
    publisher = api.publishers.get()
    try:  # on the log first: the store only records what the log already holds
        record_alert_action_event(action=action, alert=found, actor=caller.name or "", role=caller.role or "",
                                  note=body.note if body else None, at=at, town=town or "", publisher=publisher)
    except Exception as exc:
        log.warning("alert %s %s not recorded: %s", alert_id, action, type(exc).__name__)
        raise Problem(503, "the event log (Kafka) did not acknowledge the action; retry later") from None
    alert = store.acknowledge_alert(alert_id, caller.name, at=at, resolve=resolve)
    if alert is None:
        raise Problem(404, "no alert with this alert_id")
    return alert


ACTION_ERRORS = responses(404, 503)


@router.post("/api/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert", response_model=Alert,
             response_model_exclude_unset=True, responses=ACTION_ERRORS)
def acknowledge(api: Api, caller: Caller, alert_id: AlertId,
                body: Annotated[ActionIn | None, Body()] = None) -> dict[str, Any]:
    return _act(api, caller, alert_id, body, resolve=False)


@router.post("/api/alerts/{alert_id}/resolve", summary="Resolve an alert", response_model=Alert,
             response_model_exclude_unset=True, responses=ACTION_ERRORS)
def resolve(api: Api, caller: Caller, alert_id: AlertId,
            body: Annotated[ActionIn | None, Body()] = None) -> dict[str, Any]:
    return _act(api, caller, alert_id, body, resolve=True)
