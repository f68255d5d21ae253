"""Need warnings (需求预警, policy ``person_level``), judged at ``as_of`` (CONTRACT §2)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from projections.api.context import Api
from projections.api.guard import Caller, not_an_id_number, require_person
from projections.api.models import Warnings
from projections.api.params import AsOfDate, Limit, Offset, PersonId, Rule, Snapshot
from projections.api.problems import responses
from projections.api.routes.aggregates import today_shanghai

router = APIRouter(tags=["person level"])


@router.get("/api/warnings", summary="Need warnings (需求预警) at a date", response_model=Warnings,
            response_model_exclude_unset=True, responses=responses(404))
def warnings(
    api: Api,
    caller: Caller,
    as_of: Annotated[AsOfDate | None, Query(description="default: today in Asia/Shanghai")] = None,
    rule: Rule = None,
    person_id: PersonId = None,
    limit: Limit = 100,
    offset: Offset = 0,
    snapshot: Snapshot = None,
) -> dict[str, Any]:
    not_an_id_number(person_id)
    source = api.source(snapshot, person_level=True)
    if person_id is not None:
        require_person(caller, source, person_id)
    when = as_of or today_shanghai()
    answer = source.warnings(when, rule=rule, person_id=person_id, towns=caller.town_filter(), limit=limit,
                             offset=offset)
    return {"as_of": when.isoformat(), **answer}
