"""One error shape for every failed request: RFC 9457 problem details (``application/problem+json``).

Every answer with a status >= 400 -- a refused token, an unknown route, a bad parameter, a
suppressed daily series, an unreachable Kafka, an unexpected error -- is one JSON object::

    {"type": "about:blank", "title": "Not Found", "status": 404,
     "detail": "no alert with this alert_id", "instance": "/api/alerts/A1/resolve"}

plus, for invalid requests, ``errors``: ``[{"loc": ["query", "from"], "msg": "...", "type": "..."}]``.
``detail`` is a sentence naming the parameter or field.  Nothing the caller sent is echoed back
(no ``input``, no value in a message: it may be a national ID number or a token), and ``detail``
and ``instance`` pass through the ID-number mask (``schemas.idnumber.mask_ids``) as a last guard.

Routes raise :class:`Problem` (or Starlette's ``HTTPException``); the handlers registered by
:func:`install` turn every error into this shape.  The OpenAPI side (which statuses each operation
documents) is ``projections/api/openapi.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from schemas.idnumber import mask_ids

log = logging.getLogger("careledger.api")

MEDIA_TYPE = "application/problem+json"
ABOUT_BLANK = "about:blank"
#: ``type`` of a request whose parameters or body do not validate (422)
INVALID_REQUEST = "urn:careledger:problem:invalid-request"
#: ``type`` of an aggregate the caller may not see at that granularity (403, docs/privacy.md)
NEEDS_EXACT_ACCESS = "urn:careledger:problem:needs-exact-access"
#: ``type`` of a request that carried a credential somewhere other than the Authorization header
CREDENTIAL_IN_URL = "urn:careledger:problem:credential-in-url"


class FieldError(BaseModel):
    """One invalid parameter or body field (the value itself is never repeated)."""

    loc: list[str | int] = Field(description='where: ["query", "from"], ["body", "url"], ...')
    msg: str
    type: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; operations may add members (``errors``, ``ready``, ``accepted``...)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="a URI naming the kind of problem; about:blank when the status says it all")
    title: str = Field(description="the HTTP status phrase or a short summary of the type")
    status: int
    detail: str = Field(description="a sentence for humans naming the parameter, field or resource")
    instance: str = Field(description="the request path")
    errors: list[FieldError] | None = Field(default=None, description="invalid requests (422): one entry per field")


class Problem(StarletteHTTPException):
    """An error answer: ``status``, a ``detail`` sentence, optional ``type`` and extra members."""

    def __init__(self, status: int, detail: str, *, type: str = ABOUT_BLANK, title: str | None = None,
                 headers: Mapping[str, str] | None = None, **members: Any) -> None:
        super().__init__(status_code=status, detail=detail, headers=dict(headers) if headers else None)
        self.type = type
        self.title = title
        self.members = members


DESCRIPTIONS = {
    400: "The body is not what the operation reads (not JSON, wrong shape)",
    401: "No token, or an invalid or revoked one (WWW-Authenticate: Bearer)",
    403: "The token's role or towns do not allow this",
    404: "Not found",
    409: "Conflict",
    413: "The body is too large",
    422: "A parameter or body field is not valid (errors names each one)",
    500: "Unexpected error (logged; nothing internal is shown)",
    503: "A service this operation needs (Kafka, the store) does not answer; retry later",
}


def responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it can answer besides the ones every route of
    its policy documents (openapi.py adds 401/403/422/500).  ``described``: ``s404="no such alert"``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"description": DESCRIPTIONS.get(status, _phrase(status))}
    for name, text in described.items():
        out[int(name.lstrip("s"))] = {"description": text}
    return out


def invalid(param: str, message: str, where: str = "query") -> RequestValidationError:
    """A 422 for one parameter, raised like FastAPI's own validation errors."""
    return RequestValidationError([{"type": "value_error", "loc": (where, param), "msg": message}])


def body(request: Request | None, status: int, detail: str, *, type: str = ABOUT_BLANK, title: str | None = None,
         **members: Any) -> dict[str, Any]:
    path = request.url.path if request is not None else ""
    out: dict[str, Any] = {"type": type, "title": title or _phrase(status), "status": status,
                           "detail": mask_ids(detail), "instance": mask_ids(path)}
    out.update(members)
    return out


def response(request: Request | None, status: int, detail: str, *, headers: Mapping[str, str] | None = None,
             type: str = ABOUT_BLANK, title: str | None = None, **members: Any) -> JSONResponse:
    return JSONResponse(body(request, status, detail, type=type, title=title, **members), status_code=status,
                        headers=dict(headers) if headers else None, media_type=MEDIA_TYPE)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI/pydantic errors without ``input``/``ctx`` (the value may be personal data), and
    ``loc`` masked: it repeats the keys the caller sent, and a JSON key may be an ID number."""
    return [{"loc": [x if isinstance(x, int) else mask_ids(str(x)) for x in err.get("loc", ())],
             "msg": mask_ids(str(err.get("msg", ""))), "type": str(err.get("type", "value_error"))}
            for err in errors]


def summary(errors: list[dict[str, Any]]) -> str:
    """``query parameter 'from': must be ...; body field 'url': ...``"""
    parts = []
    for err in errors:
        loc = [str(x) for x in err["loc"] if not isinstance(x, int)]
        items = [x + 1 for x in err["loc"] if isinstance(x, int)]
        at = f" (item {items[-1]})" if items else ""
        if len(loc) > 1:
            kind = {"query": "query parameter", "path": "path parameter", "header": "header",
                    "body": "body field", "cookie": "cookie"}.get(loc[0], loc[0])
            parts.append(f"{kind} '{'.'.join(loc[1:])}'{at}: {err['msg']}")
        elif loc == ["body"]:
            parts.append(f"request body: {err['msg']}")
        else:
            parts.append(f"{'.'.join(loc) or 'request'}: {err['msg']}")
    return "; ".join(parts) or "the request is not valid"


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    probe = {**scope, "method": "GET"}
    for ctx in iter_route_contexts(list(app.router.routes)):
        route = ctx.original_route
        if isinstance(route, Route) and route.matches(probe)[0] != Match.NONE:
            methods |= set(route.methods or ())
    return sorted(methods)


# ----------------------------------------------------------------------------- handlers
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if isinstance(exc, Problem):
        return response(request, status, str(exc.detail), headers=headers, type=exc.type, title=exc.title,
                        **exc.members)
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(status)
    if status == 404 and detail == "Not Found" and request.scope.get("route") is None:
        detail = "no such endpoint; see /docs for the operations of this API"
    elif status == 405:
        methods = allowed_methods(request.app, request.scope)
        headers["Allow"] = ", ".join(methods)
        detail = f"method {request.method} is not allowed here; allowed: {', '.join(methods)}"
    return response(request, status, detail, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = field_errors(exc.errors())
    if any(e["type"] == "json_invalid" for e in errors):  # not a field problem: the body is not JSON at all
        return response(request, 400, "the request body is not valid JSON")
    return response(request, 422, summary(errors), type=INVALID_REQUEST, title="Invalid request", errors=errors)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, mask_ids(request.url.path), exc_info=exc)
    return response(request, 500, "internal server error; see the API log")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the problem-details shape."""
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


__all__ = [
    "ABOUT_BLANK", "CREDENTIAL_IN_URL", "INVALID_REQUEST", "MEDIA_TYPE", "NEEDS_EXACT_ACCESS", "FieldError",
    "DESCRIPTIONS", "Problem", "ProblemDetails", "body", "field_errors", "install", "invalid", "response",
    "responses", "summary",
]
