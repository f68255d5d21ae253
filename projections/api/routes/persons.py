"""Persons (policy ``person_level``): one person's record (the person page) and timeline, and
finding a person by ID number.

``POST /api/persons/lookup`` (CONTRACT §2) takes the ID number in the body, never in a URL, hashes
it at once with the ingest's pseudonymiser (``producers/pseudonym.py``, the deployment's HMAC key)
and forgets it: the answer, the audit row (by ``person_id``) and the logs only ever hold the
pseudonym.  A path or query ``person_id`` that is a national ID number is refused without echo.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from processors.domain.texts import alert_reason, warning_reason
from producers.pseudonym import InvalidIdNumber
from projections.api.context import Api
from projections.api.guard import Caller, audit_person, not_an_id_number, require_person
from projections.api.models import LookupIn, LookupOut, PersonRecord, Timeline
from projections.api.params import AsOfDate
from projections.api.problems import Problem, responses
from projections.api.routes.aggregates import today_shanghai

router = APIRouter(tags=["person level"])


@router.get("/api/persons/{person_id}/timeline", summary="A person's events and alerts", response_model=Timeline,
            response_model_exclude_unset=True, responses=responses(404))
def timeline(api: Api, caller: Caller,
             person_id: Annotated[str, Path(max_length=128, description="a pseudonymous person_id")]) -> dict[str, Any]:
    not_an_id_number(person_id, where="path")
    require_person(caller, api.store, person_id)
    answer = api.store.person_timeline(person_id)
    if answer["person"] is None and not answer["events"]:
        raise Problem(404, "no person with this person_id")
    return answer


@router.post("/api/persons/lookup", summary="The person_id of a national ID number (body, never a URL)",
             response_model=LookupOut, responses=responses(s404="No person with this ID number (or not a valid one)"))
def lookup(api: Api, caller: Caller, request: Request, body: LookupIn) -> dict[str, str]:
    try:
        person_id = api.pseudonymiser().person_id(body.id_number)
    except InvalidIdNumber as exc:  # its message names the problem, never the number
        raise Problem(404, f"no person with this ID number ({str(exc).removeprefix('id_number: ')})") from None
    audit_person(request, person_id)
    require_person(caller, api.store, person_id)
    if api.store.person_aggregate(person_id) is None:
        raise Problem(404, "no person with this ID number")
    return {"person_id": person_id}


@router.get("/api/persons/{person_id}/record", summary="Everything a caseworker may see about one person",
            response_model=PersonRecord, response_model_exclude_unset=True, responses=responses(404))
def person(api: Api, caller: Caller,
           person_id: Annotated[str, Path(max_length=128, description="a pseudonymous person_id")],
           as_of: Annotated[AsOfDate | None, Query(description="warnings due at this date (default: today in "
                                                               "Asia/Shanghai)")] = None) -> dict[str, Any]:
    """Profile (with name and phone: this route is for caseworkers of the person's current town and
    admins only, and audited), status, the timeline of events, open alerts and due warnings, and
    the alerts people handled, each with what was done - every item with its reason in Chinese and
    English."""
    not_an_id_number(person_id, where="path")
    require_person(caller, api.store, person_id)
    record = api.store.person_record(person_id, as_of or today_shanghai(), identity=True)
    if record is None:
        raise Problem(404, "no person with this person_id")
    for alert in (*record["open_alerts"], *record["handled_alerts"]):
        alert.update(alert_reason(alert, api.rules).as_fields())
    for warning in record["warnings"]:
        warning.update(warning_reason(warning, api.rules).as_fields())
    return record
