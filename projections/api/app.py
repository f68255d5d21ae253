"""The HTTP read API (FastAPI): counts, report, targets, alerts, warnings, timelines, status.

``create_app(settings, store=..., publisher=..., lag_probe=..., tokens=...)`` builds the app; the
server runs it with ``uvicorn --factory`` (``careledger serve``), tests pass their own store and a
lag probe stub.  Who may call what is ``projections/api/policy.py`` (checked at start-up); tokens,
roles and the audit log are ``projections/api/auth.py``.

Every route is guarded by one app-wide dependency (``authorize``) that looks the matched route up
in the policy matrix, so a route added later cannot skip authorisation.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from time import perf_counter
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from careledger.settings import Settings
from projections.api import metrics
from projections.api.alert_actions import record_alert_action_event
from projections.api.auth import ANONYMOUS, Principal, TokenStore, bearer_token
from projections.api.dashboard import router as dashboard_router
from projections.api.policy import ALLOWED, AUDITED, PUBLIC, check_policies, policy_for
from projections.api.report import (
    COUNT_KINDS,
    current_half,
    load_targets,
    report_lines,
    report_row,
)
from projections.registry import SnapshotStores

log = logging.getLogger("careledger.api")

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_LIMIT = 10_000
GROUP_COLUMNS = ("town", "month", "key", "date")
PRINCIPAL_KEY = "careledger.principal"
AUDIT_KEY = "careledger.audit"

Kind = Literal["payment", "service", "visit", "job", "need", "person", "posting"]
assert set(COUNT_KINDS) == set(Kind.__args__)  # type: ignore[attr-defined]

DateFrom = Annotated[date | None, Query(alias="from", description="first date (YYYY-MM-DD, inclusive)")]
DateTo = Annotated[date | None, Query(alias="to", description="last date (YYYY-MM-DD, inclusive)")]
Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}")]
Offset = Annotated[int, Query(ge=0, le=2**62)]  # a bigger one overflows SQL integers (a 500)
Snapshot = Annotated[str | None, Query(max_length=64, description="a named snapshot (careledger replay snapshot)")]


class ActionBody(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class KafkaUnavailable(RuntimeError):
    pass


# ----------------------------------------------------------------------------- helpers
def today_shanghai() -> date:
    return datetime.now(SHANGHAI).date()


def _invalid(param: str, message: str, value: Any = None) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", param), "msg": message,
                                    "input": value}])


def _check_range(date_from: date | None, date_to: date | None) -> None:
    if date_from is not None and date_to is not None and date_from > date_to:
        raise _invalid("from", f"'from' ({date_from}) is after 'to' ({date_to})", str(date_from))


def _suppress(counts: dict[str, Any], kind: str, threshold: int, exempt: bool) -> dict[str, Any]:
    """Replace a small cell (0 < persons < threshold) by nulls with ``"suppressed": true``."""
    persons = counts.get("persons") or 0
    if exempt or kind == "posting" or threshold <= 1 or not 0 < persons < threshold:
        return counts
    out = dict(counts)
    for name in ("events", "persons", "amount_fen", "positions"):
        if name in out:
            out[name] = None
    out["suppressed"] = True
    return out


def _sees_exact(principal: Principal, town: str | None, anonymous_exact: bool) -> bool:
    """Admins see every small cell; caseworkers those of their own towns; anonymous callers
    when the deployment keeps the contract's open counts (``anonymous_aggregates = "exact"``)."""
    if principal.anonymous:
        return anonymous_exact
    return principal.is_admin or (principal.role == "caseworker" and principal.may_see_town(town))


class LagService:
    """Thread-safe wrapper of a lag probe (``measure() -> LagReport``)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._probe: Any = None
        self._lock = threading.Lock()

    def measure(self) -> Any:
        with self._lock:
            try:
                if self._probe is None:
                    self._probe = self._factory()
                return self._probe.measure()
            except Exception as exc:  # kafka-python raises many types; all mean "no answer"
                probe, self._probe = self._probe, None
                if probe is not None and hasattr(probe, "close"):
                    try:
                        probe.close()
                    except Exception:  # noqa: BLE001 - closing a broken client
                        pass
                raise KafkaUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._probe is not None and hasattr(self._probe, "close"):
                self._probe.close()
            self._probe = None


class Publishers:
    """The app-wide EventPublisher, created on first use (Kafka may start after the API)."""

    def __init__(self, settings: Settings, publisher: Any = None) -> None:
        self.settings = settings
        self._publisher = publisher
        self._own = publisher is None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._publisher is None:
                from producers.publisher import EventPublisher

                try:
                    self._publisher = EventPublisher(self.settings)
                except Exception as exc:
                    raise HTTPException(503, f"Kafka at {self.settings.kafka_bootstrap} is unreachable "
                                             f"({type(exc).__name__}); retry later") from None
            return self._publisher

    def current(self) -> Any:
        return self._publisher

    def close(self) -> None:
        with self._lock:
            if self._own and self._publisher is not None:
                self._publisher.close()
            self._publisher = None


# ----------------------------------------------------------------------------- auth dependency
def authorize(request: Request) -> Principal:
    """App-wide guard: the matched route's policy decides (policy.py)."""
    state = request.app.state
    route = request.scope.get("route")
    policy = policy_for(route.path) if route is not None else PUBLIC
    if policy == PUBLIC:
        return ANONYMOUS
    if policy in AUDITED:
        request.scope[AUDIT_KEY] = {"principal": ANONYMOUS}
    token = bearer_token(request.headers.get("authorization"))
    principal = ANONYMOUS
    if token is not None:
        found = state.tokens.verify(token) if token else None
        if found is None:
            raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
        principal = found
    if policy in AUDITED:
        request.scope[AUDIT_KEY] = {"principal": principal}
    request.scope[PRINCIPAL_KEY] = principal
    allowed = ALLOWED[policy]
    if principal.role not in allowed:
        if principal.anonymous:
            raise HTTPException(401, "this endpoint needs Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})
        raise HTTPException(403, f"role {principal.role} may not call {route.path}"
                            f" (needs {' or '.join(sorted(r for r in allowed if r))})")
    return principal


Caller = Annotated[Principal, Depends(authorize)]


def _person_town(store: Any, person_id: str) -> str | None:
    getter = getattr(store, "person_aggregate", None)
    if getter is not None:
        agg = getter(person_id)
        return None if agg is None else getattr(agg, "town", None)
    person = store.person_timeline(person_id).get("person")
    return None if person is None else person.get("town")


def _require_person(principal: Principal, store: Any, person_id: str) -> None:
    """Caseworkers may only look at persons of their towns (403 otherwise, unknown included)."""
    if principal.is_admin:
        return
    if not principal.may_see_town(_person_town(store, person_id)):
        raise HTTPException(403, "person is outside the towns of this token")


def _find_alert(store: Any, alert_id: str) -> dict[str, Any] | None:
    getter = getattr(store, "alert", None)
    if callable(getter):
        return getter(alert_id)
    # TODO(store): SqlStore has no alert-by-id lookup yet; page through until it exists.
    offset = 0
    while True:
        page = store.alerts(limit=MAX_LIMIT, offset=offset)
        for item in page["items"]:
            if item["alert_id"] == alert_id:
                return item
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return None


# ----------------------------------------------------------------------------- middleware
class ObserveMiddleware:
    """Metrics for every request and an audit row for every person-level/admin request.

    The audit row is written before the response starts: if it cannot be written the caller
    gets a 500 instead of unaudited person data.
    """

    def __init__(self, app: Any, tokens: TokenStore) -> None:
        self.app = app
        self.tokens = tokens

    def _audit(self, scope: dict[str, Any], status: int) -> None:
        audit = scope.get(AUDIT_KEY)
        if audit is None or audit.get("done"):
            return
        audit["done"] = True
        query = scope.get("query_string", b"").decode("latin-1")
        person_id = (scope.get("path_params") or {}).get("person_id")
        if person_id is None and query:
            person_id = (parse_qs(query).get("person_id") or [None])[0]
        self.tokens.audit(principal=audit["principal"], method=scope["method"], path=scope["path"],
                          query=query, person_id=person_id, status=status)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                if scope.get(AUDIT_KEY) is not None:
                    await run_in_threadpool(self._audit, scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if scope.get(AUDIT_KEY) is not None and not scope[AUDIT_KEY].get("done"):
                try:
                    await run_in_threadpool(self._audit, scope, 500)
                except Exception:  # noqa: BLE001 - the original error matters more
                    log.exception("could not write the audit row of a failed request")
            raise
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            metrics.HTTP_REQUESTS.labels(scope["method"], label, str(status[0])).inc()
            metrics.HTTP_SECONDS.labels(scope["method"], label).observe(perf_counter() - started)


# ----------------------------------------------------------------------------- error handlers
def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        out.append({"type": err.get("type"), "loc": list(err.get("loc", ())), "msg": str(err.get("msg"))})
    return out


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        loc = [str(x) for x in err["loc"]]
        where = f"{loc[0]} parameter '{'.'.join(loc[1:])}'" if len(loc) > 1 else ".".join(loc)
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # no "input" echoed back: a bad value may be a national ID number or other personal data
    errors = _clean_errors(exc.errors())
    return JSONResponse({"detail": errors, "message": _summary(errors)}, status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error; see the API log"}, status_code=500)


# ----------------------------------------------------------------------------- factory
def _default_store(settings: Settings) -> Any:
    from processors.domain.rules_config import load_rules
    from projections.registry import ActiveStore, Registry

    # follows `careledger replay` swaps (docs/replay.md)
    return ActiveStore(Registry(settings), "sql", load_rules(settings.rules_path))


def kafka_listening(bootstrap: str, timeout: float = 2.0) -> None:
    """Raise OSError unless some bootstrap server accepts a TCP connection (a quick check: the
    Kafka client itself waits up to ~30 s before giving up on an absent broker)."""
    errors = []
    for server in (s.strip() for s in bootstrap.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{server}: {exc}")
    raise OSError("no bootstrap server accepts connections (" + "; ".join(errors) + ")")


class _CheckedProbe:
    def __init__(self, settings: Settings, probe: Any) -> None:
        self.settings = settings
        self.probe = probe

    def measure(self) -> Any:
        kafka_listening(self.settings.kafka_bootstrap)
        return self.probe.measure()

    def close(self) -> None:
        self.probe.close()


def _default_lag_factory(settings: Settings, store: Any) -> Callable[[], Any]:
    stores: dict[str, Any] = {}

    def build() -> Any:
        from processors.lag import LagProbe
        from projections.registry import ActiveStore, Registry

        if not stores:  # opened once; a failed probe is rebuilt over the same stores
            stores[getattr(store, "name", "sql")] = store
            if settings.clickhouse_url:
                stores["clickhouse"] = ActiveStore(Registry(settings), "clickhouse")  # follows replay swaps
        return _CheckedProbe(settings, LagProbe(settings, stores))

    return build


def create_app(
    settings: Settings | None = None,
    *,
    store: Any = None,
    publisher: Any = None,
    lag_probe: Any = None,
    tokens: TokenStore | None = None,
) -> FastAPI:
    """Build the API.  ``store``: a PersonLevelStore (default: the SQL store of ``settings``);
    ``publisher``: the EventPublisher for POST /api/events (default: created on first use);
    ``lag_probe``: anything with ``measure() -> LagReport`` (default: ``processors.lag.LagProbe``);
    ``tokens``: the TokenStore (default: the store's own database)."""
    settings = settings or Settings.from_env()
    own_store = store is None
    if store is None:
        store = _default_store(settings)
    if tokens is None:
        engine = getattr(store, "engine", None)
        tokens = TokenStore(settings.sql_url, engine=engine) if engine is not None else TokenStore(settings.sql_url)
    lag = LagService((lambda: lag_probe) if lag_probe is not None else _default_lag_factory(settings, store))
    publishers = Publishers(settings, publisher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if own_store:
            try:
                await run_in_threadpool(store.migrate)
            except Exception:
                log.exception("could not migrate the projection store (the processor will)")
        try:
            await run_in_threadpool(tokens.migrate)
        except Exception:
            log.exception("could not create the token tables")
        yield
        lag.close()
        snapshots.close()
        publishers.close()
        if own_store:
            store.close()

    app = FastAPI(
        title="careledger read API",
        version="1",
        description="Counts, report, targets, alerts, warnings, timelines and status of careledger "
                    "(CONTRACT.md §2).  Person-level endpoints need `Authorization: Bearer TOKEN`.",
        lifespan=lifespan,
        dependencies=[Depends(authorize)],
        docs_url=None, redoc_url=None,  # served by dashboard.py from local files (no CDN)
    )
    app.state.settings = settings
    app.state.store = store
    snapshots = SnapshotStores(settings)  # ?snapshot=NAME (careledger replay snapshot)

    def _source(snapshot: str | None, needs: str = "counts") -> Any:
        if snapshot is None:
            return store
        found = snapshots.get(snapshot)
        if found is None or not hasattr(found, needs):
            raise HTTPException(404, f"no snapshot {snapshot!r} with {needs}")
        return found

    app.state.tokens = tokens
    app.state.lag = lag
    app.state.publishers = publishers
    app.add_middleware(ObserveMiddleware, tokens=tokens)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    threshold = settings.small_cell_threshold
    anonymous_exact = settings.anonymous_aggregates == "exact"

    # ------------------------------------------------------------------ operations
    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="The store and Kafka answer")
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            ping = getattr(store, "ping", None)
            ping() if ping is not None else store.offsets()
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["store"] = f"unreachable: {type(exc).__name__}"
        try:
            lag.measure()
            checks["kafka"] = "ok"
        except KafkaUnavailable as exc:
            checks["kafka"] = f"unreachable at {settings.kafka_bootstrap}: {exc.__cause__.__class__.__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # ------------------------------------------------------------------ aggregates
    @app.get("/api/counts", tags=["aggregates"], summary="Events, persons, amount, positions")
    def counts(
        caller: Caller,
        kind: Annotated[Kind, Query(description="what to count")],
        key: Annotated[str | None, Query(max_length=64, description="program, service, visit_kind, ...")] = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        town: Annotated[str | None, Query(max_length=128)] = None,
        snapshot: Snapshot = None,
    ) -> dict[str, Any]:
        _check_range(date_from, date_to)
        answer = _source(snapshot).counts(kind, key, date_from, date_to, town)
        return _suppress(answer, kind, threshold, _sees_exact(caller, town, anonymous_exact))

    @app.get("/api/counts/grouped", tags=["aggregates"], summary="Counts grouped by town/month/key/date")
    def grouped(
        caller: Caller,
        kind: Annotated[Kind, Query()],
        group_by: Annotated[list[str], Query(description="town, month, key, date (repeat or comma list)")],
        date_from: DateFrom = None,
        date_to: DateTo = None,
        town: Annotated[str | None, Query(max_length=128)] = None,
        key: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        columns: list[str] = []
        for item in group_by:
            for col in item.split(","):
                col = col.strip()
                if col not in GROUP_COLUMNS:
                    raise _invalid("group_by", f"cannot group by {col!r}; expected any of {list(GROUP_COLUMNS)}",
                                   col)
                if col not in columns:
                    columns.append(col)
        _check_range(date_from, date_to)
        rows = store.grouped_counts(kind, columns, key=key, date_from=date_from, date_to=date_to, town=town)
        return {"group_by": columns,
                "rows": [_suppress(r, kind, threshold, _sees_exact(caller, r.get("town", town), anonymous_exact)) for r in rows]}

    @app.get("/api/report", tags=["aggregates"], summary="The half-year report table")
    def report(caller: Caller, date_from: DateFrom = None, date_to: DateTo = None) -> dict[str, Any]:
        if date_from is None or date_to is None:
            half_from, half_to = current_half(today_shanghai())
            date_from, date_to = date_from or half_from, date_to or half_to
        _check_range(date_from, date_to)
        rows = []
        for line in report_lines():
            answer = store.counts(line.kind, line.key, date_from, date_to, None)
            rows.append(report_row(line, _suppress(answer, line.kind, threshold, caller.is_admin or (caller.anonymous and anonymous_exact))))
        return {"from": date_from.isoformat(), "to": date_to.isoformat(), "rows": rows}

    @app.get("/api/targets", tags=["aggregates"], summary="Progress against careledger/targets.csv")
    def targets(caller: Caller) -> dict[str, Any]:
        items = []
        for target in load_targets(settings.targets_path):
            answer = store.counts(target.kind, target.key, target.date_from, target.date_to, None)
            shown = _suppress(answer, target.kind, threshold, caller.is_admin or (caller.anonymous and anonymous_exact))
            current = shown["persons"] if target.kind != "posting" else shown["positions"]
            items.append({
                "metric": target.metric, "kind": target.kind, "key": target.key, "label_zh": target.label_zh,
                "period": target.period, "from": target.date_from.isoformat(), "to": target.date_to.isoformat(),
                "target": target.target, "measure": "positions" if target.kind == "posting" else "persons",
                "current": current,
                "progress": None if current is None or not target.target else round(current / target.target, 4),
                "note": target.note, **({"suppressed": True} if shown.get("suppressed") else {}),
            })
        return {"items": items}

    @app.get("/api/status", tags=["aggregates"], summary="Lag of every projection behind careledger.events")
    def status(caller: Caller) -> Any:
        try:
            report = lag.measure()
        except KafkaUnavailable as exc:
            return JSONResponse({"detail": f"Kafka at {settings.kafka_bootstrap} is unreachable, lag unknown "
                                           f"({exc}); the read models may still be served"},
                                status_code=503)
        projections = {}
        for name, total in report.per_projection.items():
            metrics.PROJECTION_LAG.labels(name).set(total)
            projections[name] = {"lag": total, "partitions": {str(p): n for p, n in
                                                              sorted(report.per_partition.get(name, {}).items())}}
        for name, why in getattr(report, "unavailable", {}).items():
            projections[name] = {"lag": None, "unavailable": why}
        total = report.total
        return {"lag": total, "caught_up": total == 0, "topic": settings.topics.events,
                # a projection whose store does not answer is listed with lag null; "lag" covers the rest
                "degraded": bool(getattr(report, "unavailable", {})),
                "projections": projections,
                "events_end_offsets": {str(p): n for p, n in sorted(report.end_offsets.items())}}

    # ------------------------------------------------------------------ person level
    @app.get("/api/alerts", tags=["person level"], summary="Risk alerts (风险隐患)")
    def alerts(
        caller: Caller,
        rule: Annotated[str | None, Query(max_length=64)] = None,
        person_id: Annotated[str | None, Query(max_length=128)] = None,
        status: Annotated[Literal["open", "resolved"] | None, Query()] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        snapshot: Snapshot = None,
    ) -> dict[str, Any]:
        source = _source(snapshot, "alerts")
        if person_id is not None:
            _require_person(caller, source, person_id)
        return source.alerts(rule=rule, person_id=person_id, status=status, towns=caller.town_filter(),
                            limit=limit, offset=offset)

    def _act(caller: Principal, alert_id: str, body: ActionBody | None, resolve: bool) -> dict[str, Any]:
        found = _find_alert(store, alert_id)
        if found is None:
            raise HTTPException(404, f"no alert {alert_id}")
        town = found.get("town") or _person_town(store, found["person_id"])
        if not caller.is_admin and not caller.may_see_town(town):
            raise HTTPException(403, "alert is about a person outside the towns of this token")
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        action = "resolve" if resolve else "acknowledge"
        try:  # on the log first: the store only records what the log already holds
            record_alert_action_event(action=action, alert=found, actor=caller.name or "",
                                      role=caller.role or "", note=body.note if body else None, at=at,
                                      town=town or "", publisher=publishers.get())
        except HTTPException:
            raise
        except Exception as exc:
            log.warning("alert %s %s not recorded: %s", alert_id, action, type(exc).__name__)
            raise HTTPException(503, "the event log (Kafka) did not acknowledge the action; retry later") from None
        alert = store.acknowledge_alert(alert_id, caller.name, at=at, resolve=resolve)
        if alert is None:
            raise HTTPException(404, f"no alert {alert_id}")
        return alert

    @app.post("/api/alerts/{alert_id}/acknowledge", tags=["person level"], summary="Acknowledge an alert")
    def acknowledge(caller: Caller, alert_id: str,
                    body: Annotated[ActionBody | None, Body()] = None) -> dict[str, Any]:
        return _act(caller, alert_id, body, resolve=False)

    @app.post("/api/alerts/{alert_id}/resolve", tags=["person level"], summary="Resolve an alert")
    def resolve(caller: Caller, alert_id: str,
                body: Annotated[ActionBody | None, Body()] = None) -> dict[str, Any]:
        return _act(caller, alert_id, body, resolve=True)

    @app.get("/api/warnings", tags=["person level"], summary="Need warnings (需求预警) at a date")
    def warnings(
        caller: Caller,
        as_of: Annotated[date | None, Query(description="default: today in Asia/Shanghai")] = None,
        rule: Annotated[str | None, Query(max_length=64)] = None,
        person_id: Annotated[str | None, Query(max_length=128)] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        snapshot: Snapshot = None,
    ) -> dict[str, Any]:
        source = _source(snapshot, "warnings")
        if person_id is not None:
            _require_person(caller, source, person_id)
        if as_of is not None and not date(1900, 1, 1) <= as_of <= date(9000, 12, 31):  # month/deadline arithmetic
            raise _invalid("as_of", "must be between 1900-01-01 and 9000-12-31", str(as_of))
        answer = source.warnings(as_of or today_shanghai(), rule=rule, person_id=person_id,
                                towns=caller.town_filter(), limit=limit, offset=offset)
        return {"as_of": (as_of or today_shanghai()).isoformat(), **answer}

    @app.get("/api/persons/{person_id}/timeline", tags=["person level"], summary="A person's events and alerts")
    def timeline(caller: Caller, person_id: str) -> dict[str, Any]:
        _require_person(caller, store, person_id)
        answer = store.person_timeline(person_id)
        if answer.get("person") is None and not answer.get("events"):
            raise HTTPException(404, f"no person {person_id}")
        return answer

    # ------------------------------------------------------------------ admin
    @app.get("/api/audit", tags=["admin"], summary="Who read which person-level data")
    def audit(
        caller: Caller,
        token_name: Annotated[str | None, Query(max_length=128)] = None,
        person_id: Annotated[str | None, Query(max_length=128)] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        return tokens.audit_rows(token_name=token_name, person_id=person_id, limit=limit, offset=offset)

    from producers import http_ingest

    app.include_router(http_ingest.router)
    app.include_router(dashboard_router)
    from projections.api import alert_stream, subscriptions

    app.include_router(alert_stream.router)
    app.include_router(subscriptions.router)
    app.dependency_overrides[http_ingest.get_publisher] = publishers.get

    check_policies(app)
    return app
