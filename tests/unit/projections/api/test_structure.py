"""Issue 13.2, API side: app.py only assembles routers; webhook tables live outside the HTTP layer;
the API calls the store's declared methods instead of probing for them."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Table

import projections.api as api_package
from projections import webhook_store
from projections.api.app import create_app
from projections.api.policy import POLICIES
from projections.store import PersonLevelStore
from tests.unit.projections.api.conftest import StubProbe, auth

API_DIR = Path(api_package.__file__).parent
ROUTER_MODULES = {"ops", "aggregates", "alerts", "warnings", "persons", "audit", "webhooks"}


def test_every_route_lives_in_a_router_module_not_in_app(app: Any) -> None:
    modules = {ctx.original_route.endpoint.__module__ for ctx in iter_route_contexts(list(app.router.routes))
               if getattr(ctx.original_route, "endpoint", None) is not None and ctx.path in POLICIES}
    assert "projections.api.app" not in modules
    assert {f"projections.api.routes.{name}" for name in ROUTER_MODULES} <= modules
    tree = ast.parse((API_DIR / "app.py").read_text(encoding="utf-8"))
    decorated = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.decorator_list
                 and node.name != "lifespan"]
    assert decorated == [], f"app.py defines routes: {decorated}"


def test_webhook_tables_are_defined_outside_the_http_layer() -> None:
    assert {t.name for t in webhook_store.metadata.tables.values()} == {"webhook_subscriptions",
                                                                         "webhook_deliveries"}
    for path in [*API_DIR.glob("*.py"), *API_DIR.glob("routes/*.py")]:
        if path.name == "auth.py":  # the token and audit tables (the ops helper's migrations own them)
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        sqlalchemy_names = {alias.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                            and (n.module or "").startswith("sqlalchemy") for alias in n.names}
        assert not sqlalchemy_names & {"Table", "MetaData", "Column"}, f"{path.name} defines tables"
    assert isinstance(webhook_store.webhook_subscriptions, Table)


def test_the_api_calls_declared_store_methods(settings: Any, store: Any) -> None:
    """A store that only has what PersonLevelStore declares (no engine, no fallbacks) serves every
    read route."""
    declared = {name for cls in PersonLevelStore.__mro__ if cls.__module__ == "projections.store"
                for name in (*vars(cls), *getattr(cls, "__annotations__", {})) if not name.startswith("_")}

    class Declared:
        name = "sql"

        def __getattr__(self, attr: str) -> Any:
            if attr in declared:
                return getattr(store, attr)
            raise AttributeError(attr)

    app = create_app(settings, store=Declared(), lag_probe=StubProbe())
    with TestClient(app) as client:
        admin = auth(app.state.tokens.create("root", "admin"))
        for url in ("/readyz", "/api/counts?kind=payment", "/api/alerts", "/api/persons/a1/timeline",
                    "/api/warnings?as_of=2024-06-30", "/api/counts/grouped?kind=payment&group_by=town",
                    "/api/alerts/summary", "/api/warnings/summary", "/api/persons/a1/record", "/api/alerts?sort=queue",
                    "/api/alerts/stream?last_event_id=0&follow=false"):
            assert client.get(url, headers=admin).status_code == 200, url
        assert client.get("/api/counts?kind=payment").status_code == 200  # the published table too
    with pytest.raises(AttributeError):
        Declared().engine  # noqa: B018 - the API never needed it
