"""``POST /api/events``: the HTTP front-end of the same pipeline as ``careledger ingest``.

Body: one event object, a JSON array of events, or ``{"events": [...]}`` (at most
``MAX_BODY_BYTES`` bytes and ``MAX_EVENTS`` events).  Each event is validated, pseudonymised and
published on its own; repeats of an ``event_id`` inside one request count as duplicates.
Rejected events go to the dead-letter topic (origin ``{"source": "http", "line": index}``).

Answer ``{"accepted": n, "duplicates": n, "rejected": [{"index": i, "reasons": [...]}]}``:
- 200 when nothing was rejected; 422 when any event was rejected — the valid events of that
  request ARE published all the same (one bad record never blocks the good ones, as in ingest);
  the 422 answer is an RFC 9457 problem document (``application/problem+json``, like every error
  of the read API) carrying the same three members;
- 400 body not JSON / wrong shape, 413 body too large, 503 Kafka did not acknowledge (nothing is
  lost by retrying the whole request: event ids make re-sends harmless).
The response is sent only after Kafka acknowledged every accepted event.
A W3C ``traceparent`` request header is honoured: every event's span is a child of it, so the
caller's trace continues through the worker to the alerts and webhooks (careledger/tracing.py).

Wiring (the API app owns it)::

    from producers import http_ingest
    app.include_router(http_ingest.router, dependencies=[Depends(require_admin_token)])
    app.dependency_overrides[http_ingest.get_publisher] = lambda: the_app_wide_publisher

``get_publisher`` is a placeholder that fails until overridden; ``get_pseudonymiser`` defaults to
one built from the publisher's settings (override it too if you like).  The router itself does no
authentication: include it with the app's auth dependency.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from careledger.tracing import TRACEPARENT
from producers.pipeline import NO_RULES, input_rules, prepare
from producers.pseudonym import Pseudonymiser, redact
from producers.publisher import EventPublisher, PublishError
from schemas.input_rules import InputRules
from schemas.validation import InvalidJson, Rejected, parse_json_line

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_EVENTS = 10_000

router = APIRouter(tags=["ingest"])


def get_publisher() -> EventPublisher:
    """Placeholder dependency: the API app overrides it with its long-lived publisher."""
    raise HTTPException(status_code=503, detail="event publishing is not configured on this server")


_PSEUDONYMISERS: dict[int, Pseudonymiser] = {}


def get_pseudonymiser(publisher: Annotated[EventPublisher, Depends(get_publisher)]) -> Pseudonymiser:
    key = id(publisher.settings)
    if key not in _PSEUDONYMISERS:
        _PSEUDONYMISERS[key] = Pseudonymiser.from_settings(publisher.settings)
    return _PSEUDONYMISERS[key]


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail=f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"body larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _events_of(body: bytes) -> list[Any]:
    try:
        decoded = parse_json_line(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise HTTPException(status_code=400, detail=f"body is not UTF-8 (byte {exc.start + 1})") from None
    except InvalidJson as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    if isinstance(decoded, dict) and set(decoded) == {"events"}:
        decoded = decoded["events"]
        if not isinstance(decoded, list):
            raise HTTPException(status_code=400, detail="events: must be an array")
    items = decoded if isinstance(decoded, list) else [decoded]
    if len(items) > MAX_EVENTS:
        raise HTTPException(status_code=413, detail=f"more than {MAX_EVENTS} events in one request")
    return items


_RULES: dict[int, InputRules] = {}


def get_input_rules(publisher: Annotated[EventPublisher, Depends(get_publisher)]) -> InputRules:
    """The input rules (towns, time window) of the publisher's settings."""
    key = id(publisher.settings)
    if key not in _RULES:
        _RULES[key] = input_rules(publisher.settings)
    return _RULES[key]


def process(items: list[Any], publisher: EventPublisher, pseudonymiser: Pseudonymiser,
            rules: InputRules = NO_RULES, parent: str | None = None) -> dict[str, Any]:
    """Validate, dead-letter and publish one request's events (blocking: run in a thread);
    ``parent``: the request's ``traceparent`` (absent or malformed: each event starts a trace)."""
    seen: set[str] = set()
    accepted: list[tuple[dict[str, Any], bytes | None]] = []
    rejected: list[dict[str, Any]] = []
    duplicates = 0
    for index, item in enumerate(items):
        result, value = prepare(item, pseudonymiser, rules)
        if isinstance(result, Rejected):
            rejected.append({"index": index, "reasons": [redact(r) for r in result.reasons]})
            publisher.publish_dlq(item, result.reasons, {"source": "http", "line": index})
            continue
        if result.event["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(result.event["event_id"])
        accepted.append((result.event, value))
    publisher.publish_and_wait(accepted, parent=parent)
    return {"accepted": len(accepted), "duplicates": duplicates, "rejected": rejected}


@router.post("/api/events", summary="Validate and publish events (same rules as careledger ingest)")
async def post_events(
    request: Request,
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
    pseudonymiser: Annotated[Pseudonymiser, Depends(get_pseudonymiser)],
    rules: Annotated[InputRules, Depends(get_input_rules)],
) -> JSONResponse:
    items = _events_of(await _read_body(request))
    try:
        answer = await run_in_threadpool(process, items, publisher, pseudonymiser, rules,
                                         request.headers.get(TRACEPARENT))
    except PublishError as exc:
        raise HTTPException(status_code=503, detail=f"{exc}; retry the request") from None
    if not answer["rejected"]:
        return JSONResponse(answer)
    problem = {"type": "urn:careledger:problem:events-rejected", "title": "Some events were rejected", "status": 422,
               "detail": f"{len(answer['rejected'])} of {len(items)} events rejected (see rejected); the accepted "
                         "ones were published", "instance": request.url.path}
    return JSONResponse({**problem, **answer}, status_code=422, media_type="application/problem+json")
