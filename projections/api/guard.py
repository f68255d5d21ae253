"""The authorisation gate: one app-wide dependency that applies the policy matrix (policy.py).

``authorize`` runs for every request (``FastAPI(dependencies=[Depends(authorize)])``), looks the
matched route up in ``POLICIES`` and answers 401/403 before the route runs, so a route added later
cannot skip authorisation.  Routes take the caller as ``caller: Caller``.

Also here: the person-level town check every route uses (``require_person``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request

from projections.api import problems
from projections.api.auth import ANONYMOUS, Principal, TokenStore, bearer_token, is_credential
from projections.api.policy import ALLOWED, AUDITED, PUBLIC, policy_for
from projections.api.problems import Problem
from schemas.idnumber import contains_id_number

PRINCIPAL_KEY = "careledger.principal"
AUDIT_KEY = "careledger.audit"
BEARER = {"WWW-Authenticate": "Bearer"}


def _credential_in_query(request: Request) -> bool:
    query = request.scope.get("query_string", b"").decode("latin-1")
    return any(is_credential(name, value) for name, value in parse_qsl(query, keep_blank_values=True))


def authorize(request: Request) -> Principal:
    """App-wide guard: the matched route's policy decides (policy.py)."""
    route = request.scope.get("route")
    policy = policy_for(route.path) if route is not None else PUBLIC
    if policy == PUBLIC:
        return ANONYMOUS
    if policy in AUDITED:
        request.scope[AUDIT_KEY] = {"principal": ANONYMOUS}
    tokens: TokenStore = request.app.state.tokens
    header = request.headers.get("authorization")
    if header is None and _credential_in_query(request):
        # refused, and said so: a token in a URL ends up in proxy logs and browser history
        raise Problem(401, "credentials are only accepted in the Authorization header (Bearer TOKEN), never in "
                           "the query string; revoke a token that was sent in a URL", headers=BEARER,
                      type=problems.CREDENTIAL_IN_URL, title="Credential in the URL")
    token = bearer_token(header)
    principal = ANONYMOUS
    if token is not None:
        found = tokens.verify(token) if token else None
        if found is None:
            raise Problem(401, "invalid or revoked token", headers=BEARER)
        principal = found
    if policy in AUDITED:
        request.scope[AUDIT_KEY] = {"principal": principal}
    request.scope[PRINCIPAL_KEY] = principal
    allowed = ALLOWED[policy]
    if principal.role not in allowed:
        if principal.anonymous:
            raise Problem(401, "this endpoint needs Authorization: Bearer TOKEN", headers=BEARER)
        raise Problem(403, f"role {principal.role} may not call {route.path}"
                           f" (needs {' or '.join(sorted(r for r in allowed if r))})")
    return principal


Caller = Annotated[Principal, Depends(authorize)]


def audit_person(request: Request, person_id: str) -> None:
    """Name the person a request was about in its audit row (when it is not in the URL)."""
    audit = request.scope.get(AUDIT_KEY)
    if audit is not None:
        audit["person_id"] = person_id


def audit_listed(request: Request, person_ids: Iterable[str]) -> None:
    """Name every person a list showed in its audit row (``audit_subjects``): a subject-access
    request asks the audit log by person, and a list names nobody in its URL."""
    audit = request.scope.get(AUDIT_KEY)
    if audit is not None:
        audit.setdefault("subjects", set()).update(person_ids)


ID_AS_PERSON = ("must be the pseudonymous person id, not a national ID number: find a person by ID number with POST "
                "/api/persons/lookup (the number then never appears in a URL or a log)")


def not_an_id_number(person_id: str | None, where: str = "query") -> None:
    """422 (without echo) for a person_id that is a national ID number: one in a URL would end up in
    logs and browser history; the lookup takes it in a body instead."""
    if person_id is not None and contains_id_number(person_id):
        raise problems.invalid("person_id", ID_AS_PERSON, where=where)


def person_town(store: Any, person_id: str) -> str | None:
    agg = store.person_aggregate(person_id)
    return None if agg is None else agg.town


def towns_asked(principal: Principal, town: str | None) -> list[str] | None:
    """The towns a person-level list shows: the caller's (None: all, for admins), narrowed to
    ``town`` when asked - a caseworker asking for another town gets an empty list, not an error."""
    allowed = principal.town_filter()
    if town is None:
        return allowed
    return [town] if allowed is None or town in allowed else []


def require_admin_for_snapshot(principal: Principal, snapshot: str | None) -> None:
    """Person-level data of a snapshot is for admins: a caseworker sees the persons of her towns
    as they live now, and a snapshot knows only where they lived then - through it, a caseworker
    read the names, phones and alerts of persons who had moved out of her towns."""
    if snapshot is not None and not principal.is_admin:
        raise Problem(403, "person-level snapshots are for admins; caseworkers read the live data of their towns")


def require_person(principal: Principal, store: Any, person_id: str) -> None:
    """Caseworkers may only look at persons of their towns (403 otherwise, unknown included)."""
    if principal.is_admin:
        return
    if not principal.may_see_town(person_town(store, person_id)):
        raise Problem(403, "the person is outside the towns of this token")


__all__ = ["AUDIT_KEY", "BEARER", "PRINCIPAL_KEY", "Caller", "audit_listed", "audit_person", "authorize", "not_an_id_number",
           "towns_asked",
           "person_town", "require_admin_for_snapshot", "require_person"]
