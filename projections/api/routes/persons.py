"""Persons (policy ``person_level``): a person's timeline, and finding a person by ID number.

``POST /api/persons/lookup`` (CONTRACT §2) takes the ID number in the body, never in a URL, hashes
it at once with the ingest's pseudonymiser (``producers/pseudonym.py``, the deployment's HMAC key)
and forgets it: the answer, the audit row (by ``person_id``) and the logs only ever hold the
pseudonym.  A path or query ``person_id`` that is a national ID number is refused without echo.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from producers.pseudonym import InvalidIdNumber
from projections.api.context import Api
from projections.api.guard import Caller, audit_person, not_an_id_number, require_person
from projections.api.models import LookupIn, LookupOut, Timeline
from projections.api.problems import Problem, responses

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
