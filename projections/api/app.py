"""The HTTP read API (FastAPI): ``create_app`` assembles it, the routers do the work.

``create_app(settings, store=..., publisher=..., lag_probe=..., tokens=...)`` builds the app; the
server runs it with ``uvicorn --factory`` (``careledger serve``), tests pass their own store and a
lag probe stub.  Where things are:

- routes, one module per resource: ``routes/aggregates.py`` (counts, grouped, report, targets),
  ``routes/ops.py`` (healthz, readyz, metrics, status), ``routes/alerts.py``, ``alert_stream.py``,
  ``routes/warnings.py``, ``routes/persons.py`` (timeline, lookup), ``routes/audit.py``,
  ``routes/webhooks.py``, ``POST /api/events`` (``producers/http_ingest.py``), the dashboard
  (``dashboard.py``);
- who may call what: ``policy.py``, applied by the one app-wide dependency ``guard.authorize``
  (checked at start-up: a route without a policy stops the server); tokens and the audit log:
  ``auth.py``; metrics and audit rows: ``observe.py``;
- errors (RFC 9457 problem details): ``problems.py``; the OpenAPI description: ``openapi.py``;
  small-cell protection of aggregates: ``suppression.py`` over ``projections/disclosure.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from careledger.settings import Settings
from processors.domain.rules_config import load_rules
from producers import http_ingest
from projections.api import openapi, problems
from projections.api.alert_stream import router as alert_stream_router
from projections.api.auth import TokenStore
from projections.api.context import ApiState, LagService, Publishers, default_lag_factory, own_engine
from projections.api.dashboard import router as dashboard_router
from projections.api.guard import authorize
from projections.api.observe import ObserveMiddleware
from projections.api.policy import check_policies
from projections.api.routes import aggregates, alerts, audit, ops, persons, warnings, webhooks
from projections.api.suppression import Publisher
from projections.registry import ActiveStore, Registry, SnapshotStores

log = logging.getLogger("careledger.api")

DESCRIPTION = """Counts, report, targets, alerts, warnings, timelines and status of careledger (CONTRACT.md §2).

Person-level and admin operations need `Authorization: Bearer TOKEN` (the Authorize button); aggregates
take a token optionally: without exact access, small cells are suppressed (docs/privacy.md).  Every error
is `application/problem+json` (RFC 9457)."""


def create_app(
    settings: Settings | None = None,
    *,
    store: Any = None,
    publisher: Any = None,
    lag_probe: Any = None,
    tokens: TokenStore | None = None,
) -> FastAPI:
    """Build the API.  ``store``: a PersonLevelStore (default: the active SQL store of ``settings``,
    following ``careledger replay`` swaps); ``publisher``: the EventPublisher for POST /api/events
    and alert actions (default: created on first use); ``lag_probe``: anything with ``measure() ->
    LagReport`` (default: ``processors.lag.LagProbe``); ``tokens``: the TokenStore (default: the
    store's own database, else the settings' one)."""
    settings = settings or Settings.from_env()
    own_store = store is None
    if store is None:
        store = ActiveStore(Registry(settings), "sql", load_rules(settings.rules_path))
    if tokens is None:
        tokens = TokenStore(settings.sql_url, engine=own_engine(store))
    lag = LagService((lambda: lag_probe) if lag_probe is not None else default_lag_factory(settings, store))
    api = ApiState(settings=settings, store=store, tokens=tokens, lag=lag, publishers=Publishers(settings, publisher),
                   snapshots=SnapshotStores(settings),
                   published=Publisher(settings.small_cell_threshold, tokens.caseworker_towns))

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
        api.close()
        if own_store:
            store.close()

    app = FastAPI(title="careledger read API", version="1", description=DESCRIPTION, lifespan=lifespan,
                  dependencies=[Depends(authorize)],
                  docs_url=None, redoc_url=None)  # /docs, /redoc: dashboard.py, from local files (no CDN)
    app.state.api = api
    # kept for callers that reach into the app (tests, the webhook deliverer's tests)
    app.state.settings, app.state.store, app.state.tokens = settings, store, tokens
    app.add_middleware(ObserveMiddleware, tokens=tokens)
    problems.install(app)

    for router in (ops.router, aggregates.router, alerts.router, alert_stream_router, warnings.router,
                   persons.router, audit.router, webhooks.router, dashboard_router):
        app.include_router(router)
    app.include_router(http_ingest.router)
    app.dependency_overrides[http_ingest.get_publisher] = api.publishers.get
    openapi.install(app)
    check_policies(app)
    return app


__all__ = ["create_app"]
