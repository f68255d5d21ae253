"""The authorisation matrix of the read API, as data.

Every route of the app (method-independent path template) has exactly one policy:

- ``public``: no token is looked at (liveness, readiness, metrics, the API description);
- ``viewer``: aggregate data.  Anonymous callers are allowed; a token, when sent, must be valid
  (else 401).  Small cells (fewer than ``settings.small_cell_threshold`` persons) are suppressed
  for anonymous and viewer callers, and for caseworkers outside their own towns; admins see all;
- ``person_level``: a caseworker or admin token (401 without one, 403 for a viewer); caseworkers
  only see persons of their towns (403 for a person outside them); every request is audited;
- ``admin``: an admin token (401 / 403); audited.

``check_policies(app)`` runs when the app is built: a route without a policy (or a policy for a
route that no longer exists) stops the server from starting instead of leaking silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Mount, Route

PUBLIC = "public"
VIEWER = "viewer"
PERSON_LEVEL = "person_level"
ADMIN = "admin"
POLICY_NAMES = (PUBLIC, VIEWER, PERSON_LEVEL, ADMIN)

# Which roles may call a route of each policy (None = anonymous).
ALLOWED: dict[str, frozenset[str | None]] = {
    PUBLIC: frozenset({None, "viewer", "caseworker", "admin"}),
    VIEWER: frozenset({None, "viewer", "caseworker", "admin"}),
    PERSON_LEVEL: frozenset({"caseworker", "admin"}),
    ADMIN: frozenset({"admin"}),
}
AUDITED = frozenset({PERSON_LEVEL, ADMIN})

POLICIES: dict[str, str] = {
    # operations
    "/healthz": PUBLIC,
    "/readyz": PUBLIC,
    "/metrics": PUBLIC,
    "/openapi.json": PUBLIC,
    "/docs": PUBLIC,
    "/docs/oauth2-redirect": PUBLIC,
    "/redoc": PUBLIC,
    # the dashboard page and its assets (no data: the page calls the API with the user's token)
    "/": PUBLIC,
    "/static/{path:path}": PUBLIC,
    # aggregates
    "/api/counts": VIEWER,
    "/api/counts/grouped": VIEWER,
    "/api/report": VIEWER,
    "/api/targets": VIEWER,
    "/api/status": VIEWER,
    "/api/me": VIEWER,
    # person level
    "/api/alerts": PERSON_LEVEL,
    "/api/alerts/summary": PERSON_LEVEL,
    "/api/alerts/{alert_id}/assign": PERSON_LEVEL,
    "/api/alerts/{alert_id}/acknowledge": PERSON_LEVEL,
    "/api/alerts/{alert_id}/resolve": PERSON_LEVEL,
    "/api/warnings": PERSON_LEVEL,
    "/api/warnings/summary": PERSON_LEVEL,
    "/api/warnings/{warning_id}/snooze": PERSON_LEVEL,
    "/api/persons/{person_id}/record": PERSON_LEVEL,  # the person page: names and phone, audited
    "/api/persons/{person_id}/timeline": PERSON_LEVEL,
    "/api/persons/lookup": PERSON_LEVEL,  # POST {"id_number"}: the ID number never in a URL
    "/api/alerts/stream": PERSON_LEVEL,  # SSE: alerts and warnings; caseworkers get those of their towns
    # admin
    "/api/audit": ADMIN,
    "/api/events": ADMIN,  # POST: publishes events for any town, so admin only
    "/api/webhooks": ADMIN,
    "/api/webhooks/{subscription_id}": ADMIN,
    "/api/webhooks/{subscription_id}/deliveries": ADMIN,
}


class MissingPolicy(RuntimeError):
    """A route has no entry in ``POLICIES`` (or an entry names no route / no known policy)."""


def _flatten(routes: Iterable[BaseRoute]) -> Iterator[tuple[BaseRoute, str | None]]:
    """(route as matched, path the app serves it at); included routers are expanded."""
    for ctx in iter_route_contexts(list(routes)):
        yield ctx.original_route, ctx.path


def route_paths(routes: Iterable[BaseRoute]) -> list[str]:
    """Path templates of every route (the key ``authorize`` looks up: ``scope["route"].path``)."""
    paths: list[str] = []
    for route, served_at in _flatten(routes):
        if isinstance(route, Mount):
            raise MissingPolicy(f"mounted app at {route.path!r}: mounts are not covered by the policy matrix")
        if isinstance(route, Route):
            if served_at is not None and served_at != route.path:
                raise MissingPolicy(f"route {route.path!r} is served at {served_at!r}: include routers without "
                                    "a prefix (policies are looked up by the route's own path)")
            paths.append(route.path)
    return paths


def policy_for(path: str) -> str:
    try:
        return POLICIES[path]
    except KeyError:
        raise MissingPolicy(f"route {path!r} has no authorisation policy in projections/api/policy.py") from None


def check_policies(app: FastAPI, policies: dict[str, str] | None = None) -> None:
    """Fail fast unless every route of ``app`` has a known policy and every policy a route."""
    policies = POLICIES if policies is None else policies
    paths = route_paths(app.router.routes)
    missing = sorted(set(p for p in paths if p not in policies))
    if missing:
        raise MissingPolicy(f"routes without an authorisation policy: {missing} (add them to POLICIES)")
    unknown = sorted(f"{p}={v}" for p, v in policies.items() if v not in POLICY_NAMES)
    if unknown:
        raise MissingPolicy(f"unknown policies {unknown}; expected one of {POLICY_NAMES}")
    stale = sorted(set(policies) - set(paths) - {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
    if stale:
        raise MissingPolicy(f"policies for routes that do not exist: {stale}")
