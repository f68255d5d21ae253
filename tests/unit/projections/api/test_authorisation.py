"""The authorisation matrix (every route × every role), tokens, the admin token file, audit."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from careledger.cli import main as careledger_main
from producers.publisher import EventPublisher
from projections.api.app import create_app
from projections.api.auth import TokenError, TokenStore, api_tokens, ensure_admin_token
from projections.api.policy import (
    ADMIN,
    PERSON_LEVEL,
    POLICIES,
    PUBLIC,
    VIEWER,
    MissingPolicy,
    check_policies,
    route_paths,
)
from projections.api.routes.aggregates import today_shanghai
from tests.unit.producers.conftest import FakeProducer
from tests.unit.projections.api.conftest import (
    ID_NUMBER,
    TOWN_A,
    TOWN_B,
    StubProbe,
    auth,
    register_by_id_number,
)
from tests.unit.schemas.examples import event as example_event

DUP_ALERT = "A264cc357e6971c7d569f"  # duplicate_payment of a1 (town A)
SNOOZE_UNTIL = (today_shanghai() + timedelta(days=30)).isoformat()

# One concrete call per route; the test below insists every route of the app is listed here.
CALLS: dict[str, tuple[str, str, Any]] = {
    "/healthz": ("GET", "/healthz", None),
    "/readyz": ("GET", "/readyz", None),
    "/metrics": ("GET", "/metrics", None),
    "/openapi.json": ("GET", "/openapi.json", None),
    "/docs": ("GET", "/docs", None),
    "/docs/oauth2-redirect": ("GET", "/docs/oauth2-redirect", None),
    "/redoc": ("GET", "/redoc", None),
    "/api/counts": ("GET", "/api/counts?kind=payment", None),
    "/api/counts/grouped": ("GET", "/api/counts/grouped?kind=payment&group_by=town", None),
    "/api/report": ("GET", "/api/report?from=2024-01-01&to=2024-06-30", None),
    "/api/targets": ("GET", "/api/targets", None),
    "/api/status": ("GET", "/api/status", None),
    "/api/me": ("GET", "/api/me", None),
    "/api/alerts": ("GET", "/api/alerts", None),
    "/api/alerts/{alert_id}/acknowledge": ("POST", f"/api/alerts/{DUP_ALERT}/acknowledge", {"note": "n"}),
    "/api/alerts/{alert_id}/resolve": ("POST", f"/api/alerts/{DUP_ALERT}/resolve", None),
    "/api/alerts/{alert_id}/assign": ("POST", f"/api/alerts/{DUP_ALERT}/assign", {"assignee": "王芳"}),
    "/api/alerts/summary": ("GET", "/api/alerts/summary", None),
    "/api/warnings/summary": ("GET", "/api/warnings/summary?as_of=2024-06-30", None),
    # a2's unmet employment need (town A), due today: WARNING is replaced by its warning_id
    "/api/warnings/{warning_id}/snooze": ("POST", "/api/warnings/WARNING/snooze",
                                          {"person_id": "a2", "until": SNOOZE_UNTIL, "reason": "住院中"}),
    "/api/persons/{person_id}/record": ("GET", "/api/persons/a1/record", None),
    "/api/warnings": ("GET", "/api/warnings?as_of=2024-06-30", None),
    "/api/persons/{person_id}/timeline": ("GET", "/api/persons/a1/timeline", None),
    "/api/persons/lookup": ("POST", "/api/persons/lookup", {"id_number": ID_NUMBER}),
    "/api/audit": ("GET", "/api/audit", None),
    "/api/events": ("POST", "/api/events", example_event("need.registered")),
    "/": ("GET", "/", None),
    "/static/{path:path}": ("GET", "/static/dashboard.js", None),
    "/api/alerts/stream": ("GET", "/api/alerts/stream?last_event_id=0&follow=false", None),
    "/api/webhooks": ("GET", "/api/webhooks", None),
    # an unknown subscription: authorised callers get past the policy to a 404
    "/api/webhooks/{subscription_id}": ("GET", "/api/webhooks/none", None),
    "/api/webhooks/{subscription_id}/deliveries": ("GET", "/api/webhooks/none/deliveries", None),
}
NOT_FOUND_WHEN_AUTHORISED = {"/api/webhooks/{subscription_id}", "/api/webhooks/{subscription_id}/deliveries"}

ROLES = (None, "viewer", "caseworker", "admin")
EXPECTED = {  # policy -> role -> status class
    PUBLIC: {None: 200, "viewer": 200, "caseworker": 200, "admin": 200},
    VIEWER: {None: 200, "viewer": 200, "caseworker": 200, "admin": 200},
    PERSON_LEVEL: {None: 401, "viewer": 403, "caseworker": 200, "admin": 200},
    ADMIN: {None: 401, "viewer": 403, "caseworker": 403, "admin": 200},
}


@pytest.fixture
def full_app(settings: Any, store: Any, probe: StubProbe) -> FastAPI:
    register_by_id_number(store, settings)  # a person of town A that POST /api/persons/lookup finds
    publisher = EventPublisher(settings, producer=FakeProducer())
    return create_app(settings, store=store, lag_probe=probe, publisher=publisher)


def test_every_route_has_a_policy_and_a_test_call(full_app: FastAPI) -> None:
    paths = route_paths(full_app.routes)
    assert sorted(set(paths)) == sorted(POLICIES)
    assert sorted(CALLS) == sorted(POLICIES)


def test_route_without_policy_fails_fast(full_app: FastAPI) -> None:
    @full_app.get("/api/new-thing")
    def new_thing() -> dict[str, str]:
        return {}

    with pytest.raises(MissingPolicy, match="/api/new-thing"):
        check_policies(full_app)


def test_prefixed_router_is_refused() -> None:
    from producers import http_ingest

    app = FastAPI()
    app.include_router(http_ingest.router, prefix="/v2")
    with pytest.raises(MissingPolicy, match="prefix"):
        check_policies(app, {**POLICIES})


@pytest.mark.parametrize("route", sorted(POLICIES))
@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "anonymous")
def test_authorisation_matrix(full_app: FastAPI, route: str, role: str | None) -> None:
    with TestClient(full_app) as client:
        ts: TokenStore = full_app.state.tokens
        token = None
        if role == "caseworker":
            token = ts.create("cw", role, [TOWN_A])
        elif role is not None:
            token = ts.create(role, role)
        method, url, body = CALLS[route]
        if "WARNING" in url:
            due = full_app.state.store.warnings(today_shanghai(), person_id="a2")["items"]
            url = url.replace("WARNING", due[0]["warning_id"])
        response = client.request(method, url, headers=auth(token), json=body)
    expected = EXPECTED[POLICIES[route]][role]
    if expected == 200 and route in NOT_FOUND_WHEN_AUTHORISED:
        expected = 404
    if expected == 200:
        assert response.status_code == 200, (route, role, response.text)
    else:
        assert response.status_code == expected, (route, role, response.text)
        if expected == 401:
            assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer cl_not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", "token"])
def test_invalid_token_is_401_even_on_open_aggregates(client: TestClient, header: str) -> None:
    assert client.get("/api/counts?kind=payment", headers={"Authorization": header}).status_code == 401
    assert client.get("/api/alerts", headers={"Authorization": header}).status_code == 401
    assert client.get("/healthz", headers={"Authorization": header}).status_code == 200  # public


def test_revoked_token_is_refused(client: TestClient, app: FastAPI) -> None:
    ts: TokenStore = app.state.tokens
    token = ts.create("temp", "admin")
    assert client.get("/api/alerts", headers=auth(token)).status_code == 200
    assert ts.revoke("temp") == 1
    assert client.get("/api/alerts", headers=auth(token)).status_code == 401
    assert ts.revoke("temp") == 0


def test_token_rules(app: FastAPI) -> None:
    ts: TokenStore = app.state.tokens
    with pytest.raises(TokenError, match="towns"):
        ts.create("cw", "caseworker")
    with pytest.raises(TokenError, match="role"):
        ts.create("x", "superuser")
    with pytest.raises(TokenError, match="only applies"):
        ts.create("x", "viewer", TOWN_A)
    token = ts.create("cw", "caseworker", f"{TOWN_A}，{TOWN_B}")
    with pytest.raises(TokenError, match="exists"):
        ts.create("cw", "viewer")
    principal = ts.verify(token)
    assert principal is not None and principal.towns == (TOWN_A, TOWN_B)
    # only the hash is stored
    with ts.engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash)).scalars().all()
    assert token not in stored and all(len(h) == 64 for h in stored)


def test_person_level_reads_are_audited(client: TestClient, tokens: dict[str, str]) -> None:
    client.get("/api/alerts?person_id=a1", headers=auth(tokens["caseworker"]))
    client.get("/api/persons/b1/timeline", headers=auth(tokens["caseworker"]))
    client.get("/api/warnings?as_of=2024-06-30", headers=auth(tokens["viewer"]))
    client.get("/api/persons/a1/timeline")
    client.get("/api/counts?kind=payment", headers=auth(tokens["caseworker"]))  # aggregate: not audited
    audit = client.get("/api/audit", headers=auth(tokens["admin"])).json()
    rows = [(r["token_name"], r["role"], r["method"], r["path"], r["person_id"], r["status"])
            for r in reversed(audit["items"])]
    assert rows == [
        ("cw-a", "caseworker", "GET", "/api/alerts", "a1", 200),
        ("cw-a", "caseworker", "GET", "/api/persons/b1/timeline", "b1", 403),
        ("v", "viewer", "GET", "/api/warnings", None, 403),
        (None, None, "GET", "/api/persons/a1/timeline", "a1", 401),
    ]
    first = audit["items"][-1]
    assert first["query"] == "person_id=a1" and first["at"]
    # the audit read itself is audited (newest first next time)
    again = client.get("/api/audit?token_name=root", headers=auth(tokens["admin"])).json()
    assert again["items"][0]["path"] == "/api/audit"
    assert client.get("/api/audit?person_id=b1", headers=auth(tokens["admin"])).json()["total"] == 1


def test_audit_failure_withholds_person_data(client: TestClient, app: FastAPI, tokens: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("audit table gone")

    monkeypatch.setattr(app.state.tokens, "audit", broken)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/api/persons/a1/timeline", headers=auth(tokens["admin"]))
    assert response.status_code == 500 and "reg-a1" not in response.text and "events" not in response.text


def test_post_events_for_admin(full_app: FastAPI) -> None:
    with TestClient(full_app) as client:
        token = full_app.state.tokens.create("ingest", "admin")
        response = client.post("/api/events", headers=auth(token), json=[example_event("need.registered")])
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


# ----------------------------------------------------------------------------- admin token file, CLI
def test_ensure_admin_token(settings: Any) -> None:
    assert ensure_admin_token(settings) is True
    path: Path = settings.admin_token_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert ensure_admin_token(settings) is False
    assert path.read_text().strip() == token
    ts = TokenStore(settings.sql_url)
    principal = ts.verify(token)
    assert principal is not None and principal.role == "admin"
    assert len([t for t in ts.list() if t["role"] == "admin"]) == 1
    # revoked stays revoked across restarts
    ts.revoke(principal.name)
    assert ensure_admin_token(settings) is False and ts.verify(token) is None


def test_ensure_admin_token_creates_parent_dirs(settings: Any, tmp_path: Path) -> None:
    import dataclasses

    deep = dataclasses.replace(settings, home=tmp_path / "a" / "b")
    assert ensure_admin_token(deep) is True
    assert deep.admin_token_path.exists()


def test_admin_token_works_against_the_app(settings: Any, client: TestClient) -> None:
    ensure_admin_token(settings)
    token = settings.admin_token_path.read_text().strip()
    assert client.get("/api/audit", headers=auth(token)).status_code == 200


def test_token_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CARELEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARELEDGER_SQL_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert careledger_main(["token", "create", "--name", "wang", "--role", "caseworker",
                            "--towns", f"{TOWN_A},{TOWN_B}"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("cl_") and len(token) > 40
    principal = TokenStore(f"sqlite:///{tmp_path / 'cli.sqlite3'}").verify(token)
    assert principal is not None and principal.towns == (TOWN_A, TOWN_B)

    assert careledger_main(["token", "create", "--name", "x", "--role", "caseworker"]) == 2
    assert "towns" in capsys.readouterr().err

    assert careledger_main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "wang" in listing and TOWN_A in listing and token not in listing

    assert careledger_main(["token", "revoke", "wang"]) == 0
    assert careledger_main(["token", "revoke", "wang"]) == 1
    capsys.readouterr()
    assert careledger_main(["token", "list"]) == 0
    assert "wang" not in capsys.readouterr().out
    assert careledger_main(["token", "list", "--all"]) == 0
    assert "wang" in capsys.readouterr().out
    assert not os.environ.get("CARELEDGER_ADMIN_TOKEN")


def test_serve_is_registered() -> None:
    from careledger.cli import build_parser

    args = build_parser().parse_args(["serve", "--port", "8123"])
    assert args.port == 8123 and args.host == "127.0.0.1"
