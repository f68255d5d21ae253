"""Operations: liveness, readiness, Prometheus metrics (policy ``public``), ``/api/status``
(policy ``viewer``: the lag of every projection behind ``careledger.events``, CONTRACT §2) and
``/api/me`` (policy ``viewer``: who the token is)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from projections.api import metrics, problems
from projections.api.context import Api, KafkaUnavailable
from projections.api.guard import Caller
from projections.api.models import Health, Me, Ready, Status
from projections.api.problems import Problem, responses

router = APIRouter()


@router.get("/healthz", tags=["ops"], summary="The process is alive", response_model=Health)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], summary="The store and Kafka answer", response_model=Ready,
            responses=responses(s503="Not ready: a problem document whose ready/store/kafka members say which "
                                     "dependency does not answer"))
def readyz(api: Api, request: Request) -> Any:
    checks: dict[str, str] = {}
    try:
        api.store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["store"] = f"unreachable: {type(exc).__name__}"
    try:
        api.lag.measure()
        checks["kafka"] = "ok"
    except KafkaUnavailable as exc:
        checks["kafka"] = f"unreachable at {api.settings.kafka_bootstrap}: {exc.__cause__.__class__.__name__}"
    if all(v == "ok" for v in checks.values()):
        return {"ready": True, **checks}
    failing = ", ".join(name for name, v in checks.items() if v != "ok")
    return problems.response(request, 503, f"not ready: {failing} does not answer", ready=False, **checks)


@router.get("/metrics", tags=["ops"], summary="Prometheus metrics (text exposition format)", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"}})
def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.get("/api/status", tags=["aggregates"], summary="Lag of every projection behind careledger.events",
            response_model=Status, response_model_exclude_unset=True,
            responses=responses(s503="Kafka does not answer: the lag is unknown (the read models may still be served)"))
def status(api: Api, caller: Caller) -> dict[str, Any]:
    try:
        report = api.lag.measure()
    except KafkaUnavailable as exc:
        raise Problem(503, f"Kafka at {api.settings.kafka_bootstrap} is unreachable, lag unknown ({exc}); the read "
                           "models may still be served") from None
    projections: dict[str, Any] = {}
    for name, total in report.per_projection.items():
        metrics.PROJECTION_LAG.labels(name).set(total)
        projections[name] = {"lag": total, "partitions": {str(p): n for p, n in
                                                          sorted(report.per_partition.get(name, {}).items())}}
    for name, why in report.unavailable.items():
        projections[name] = {"lag": None, "unavailable": why}
    total = report.total
    return {"lag": total, "caught_up": total == 0, "topic": api.settings.topics.events,
            # a projection whose store does not answer is listed with lag null; "lag" covers the rest
            "degraded": bool(report.unavailable), "projections": projections,
            "events_end_offsets": {str(p): n for p, n in sorted(report.end_offsets.items())}}


@router.get("/api/me", tags=["ops"], summary="Who the token is: name, role, towns (and what it may do)",
            response_model=Me)
def me(caller: Caller) -> dict[str, Any]:
    """The dashboard shows who is signed in and offers the caller as assignee; a token that is
    sent must be valid (401), none at all is anonymous."""
    return {"name": caller.name, "role": caller.role, "towns": list(caller.towns),
            "person_level": caller.role in ("caseworker", "admin"), "admin": caller.is_admin}
