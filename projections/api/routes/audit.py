"""``GET /api/audit`` (policy ``admin``): who read or received which person-level data, newest first.

Rows are API requests (person-level and admin routes) and webhook POSTs (role ``subscriber``);
``?person_id=`` finds every row that named the person or showed them in a list or a stream."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from projections.api.context import Api
from projections.api.guard import Caller
from projections.api.models import Audit
from projections.api.params import Limit, Offset, PersonId

router = APIRouter(tags=["admin"])


@router.get("/api/audit", summary="Who read or received which person-level data", response_model=Audit)
def audit(
    api: Api,
    caller: Caller,
    token_name: Annotated[str | None, Query(max_length=128)] = None,
    person_id: PersonId = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    return api.tokens.audit_rows(token_name=token_name, person_id=person_id, limit=limit, offset=offset)
