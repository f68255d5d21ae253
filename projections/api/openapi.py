"""The OpenAPI description of the read API, made to tell the truth, and its copy in the repository.

FastAPI describes parameters, bodies and success answers from the routes.  This module adds what it
cannot know: who may call what (policy.py) and every error an operation can answer.

- security: a ``bearer`` (HTTP Bearer) scheme; ``person_level``/``admin`` operations require it,
  ``viewer`` operations take it optionally (``[{}, {"bearer": []}]``), ``public`` ones declare none;
- errors: every operation documents 500; authenticated ones 401 (and 403 unless the policy admits
  every role); operations with parameters or a body 422; plus what the route itself declares
  (``responses=problems.responses(404, ...)``).  Every error is ``application/problem+json``
  (``ProblemDetails``, problems.py);
- ``POST /api/events`` reads its body itself (producers/http_ingest.py), so its request body and
  answers are described here.

The copy in the repository (docs/api/openapi.json, docs/api.md) is ``projections/api/reference.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from projections.api.models import IngestAnswer
from projections.api.policy import ADMIN, ALLOWED, PERSON_LEVEL, POLICIES, PUBLIC, VIEWER
from projections.api.problems import DESCRIPTIONS, MEDIA_TYPE, ProblemDetails

SCHEME = "bearer"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

EVENTS_BODY = {
    "required": True,
    "description": "one event object, a JSON array of events, or {\"events\": [...]} (CONTRACT §1); at most "
                   "8 MiB and 10000 events (413 beyond).  Every event is validated like `careledger ingest` does: a "
                   "schema-valid JSON value may still be rejected by the event rules (answer 422, the valid "
                   "events of the request are published all the same).",
    "content": {"application/json": {"schema": {"anyOf": [
        {"type": "object", "description": "one event"},
        {"type": "array", "items": {"type": "object"}},
    ]}}},
}


def _problem_content() -> dict[str, Any]:
    return {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _has_input(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters") or operation.get("requestBody"))


def describe(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with security and error answers (see the module docstring)."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                      tags=app.openapi_tags)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem_schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in problem_schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["Problem"] = problem_schema
    ingest_schema = IngestAnswer.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(ingest_schema.pop("$defs", {}))  # its refs point there: ReDoc stops at a dangling one
    schemas["IngestAnswer"] = ingest_schema
    components["securitySchemes"] = {SCHEME: {"type": "http", "scheme": "bearer", "description":
                                              "Authorization: Bearer TOKEN (careledger token create)"}}
    for path, item in doc.get("paths", {}).items():
        policy = POLICIES.get(path, PUBLIC)
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            _secure(operation, policy)
            for parameter in operation.get("parameters", []):
                _not_null(parameter)
            if path == "/api/events" and method == "post":
                _ingest(operation)
            _errors(operation, policy)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def _not_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is one that may be left out (``required: false``); a URL or a header
    cannot carry JSON null, so ``anyOf [X, null]`` (pydantic's ``X | None``) becomes ``X``."""
    schema = parameter.get("schema", {})
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if "anyOf" in schema and len(options) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        parameter["schema"] = {**options[0], **rest}


def _secure(operation: dict[str, Any], policy: str) -> None:
    if policy in (PERSON_LEVEL, ADMIN):
        operation["security"] = [{SCHEME: []}]
    elif policy == VIEWER:
        operation["security"] = [{}, {SCHEME: []}]


def _ingest(operation: dict[str, Any]) -> None:
    operation["requestBody"] = EVENTS_BODY
    answer = {"application/json": {"schema": {"$ref": "#/components/schemas/IngestAnswer"}}}
    operation["responses"]["200"] = {"description": "every event accepted (or a duplicate) and acknowledged by "
                                                    "Kafka", "content": answer}
    operation["responses"]["422"] = {"description": "some events were rejected (each with its reasons, by index); "
                                                    "the others were published: a problem document with the "
                                                    "accepted/duplicates/rejected members"}
    for status in (400, 413, 503):
        operation["responses"].setdefault(str(status), {"description": DESCRIPTIONS[status]})


def _errors(operation: dict[str, Any], policy: str) -> None:
    answers = operation.setdefault("responses", {})
    wanted = {500}
    if policy != PUBLIC:
        wanted.add(401)
        if ALLOWED[policy] != ALLOWED[PUBLIC]:
            wanted.add(403)
    if _has_input(operation):
        wanted.add(422)
    if operation.get("requestBody"):
        wanted.add(400)  # a body that is not JSON at all
    for status in wanted:
        answers.setdefault(str(status), {"description": DESCRIPTIONS[status]})
    for status, answer in answers.items():
        if status.isdigit() and int(status) >= 400:
            answer["content"] = _problem_content()
            if int(status) == 401:
                answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                          "description": "Bearer"}}
    operation["responses"] = dict(sorted(answers.items()))


def install(app: FastAPI) -> None:
    """Serve :func:`describe` at /openapi.json (built once, on first request)."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(describe(app))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["SCHEME", "describe", "install"]
