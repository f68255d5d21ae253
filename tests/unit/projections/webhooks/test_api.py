"""The admin endpoints of webhook subscriptions and the delivery log."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections import open_store
from projections.api.app import create_app
from projections.webhooks.queue import DeliveryQueue
from tests.unit.projections.api.conftest import TOWN_A, StubProbe, auth, district


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Any]]:
    settings = dataclasses.replace(Settings.from_env(), home=tmp_path / "home",
                                   sql_url=f"sqlite:///{tmp_path / 'p.sqlite3'}", kafka_bootstrap="127.0.0.1:1")
    store = open_store(settings.sql_url, default_rules(), topic=settings.topics.events)
    store.migrate()
    store.apply_batch([Consumed(0, i, e) for i, e in enumerate(district())])
    app = create_app(settings, store=store, lag_probe=StubProbe())
    with TestClient(app) as client:
        ts = app.state.tokens
        tokens = {"admin": ts.create("root", "admin"), "caseworker": ts.create("cw", "caseworker", [TOWN_A]),
                  "viewer": ts.create("v", "viewer")}
        yield client, tokens, app
    store.close()


def test_subscription_lifecycle(api: tuple[TestClient, dict[str, str], Any]) -> None:
    client, tokens, app = api
    admin = auth(tokens["admin"])
    made = client.post("/api/webhooks", headers=admin,
                       json={"url": "https://example.org/hook", "rules": ["visit_hazard"], "towns": [TOWN_A]})
    assert made.status_code == 201, made.text
    sub = made.json()
    assert sub["secret"].startswith("whsec_") and sub["active"] and sub["created_by"] == "root"
    sid = sub["subscription_id"]
    listed = client.get("/api/webhooks", headers=admin).json()["items"]
    assert [s["subscription_id"] for s in listed] == [sid]
    assert "secret" not in listed[0] and "secret_enc" not in listed[0]
    one = client.get(f"/api/webhooks/{sid}", headers=admin).json()
    assert one["rules"] == ["visit_hazard"] and one["towns"] == [TOWN_A]

    DeliveryQueue(app.state.api.webhooks().engine).enqueue([
        {"delivery_id": "d1", "subscription_id": sid, "alert_id": "A1", "outbox_seq": 1, "body": "{}"}])
    log = client.get(f"/api/webhooks/{sid}/deliveries", headers=admin).json()
    assert log["total"] == 1 and log["items"][0]["status"] == "pending" and "body" not in log["items"][0]

    gone = client.delete(f"/api/webhooks/{sid}", headers=admin)
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert client.get("/api/webhooks", headers=admin).json()["items"] == []
    assert len(client.get("/api/webhooks?include_deleted=true", headers=admin).json()["items"]) == 1
    assert client.get(f"/api/webhooks/{sid}", headers=admin).status_code == 404  # deleted: gone
    assert client.get(f"/api/webhooks/{sid}/deliveries", headers=admin).status_code == 404
    assert app.state.api.webhooks().deliveries(sid, status="cancelled")["total"] == 1  # the log is kept


def test_errors_and_roles(api: tuple[TestClient, dict[str, str], Any]) -> None:
    client, tokens, _app = api
    admin = auth(tokens["admin"])
    for bad in ({"url": "ftp://example.org/x"}, {"url": "not a url"}, {"url": "https://u:p@example.org/"},
                {"url": "https://example.org/", "rules": [""]}, {}):
        answer = client.post("/api/webhooks", headers=admin, json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    assert client.get("/api/webhooks/wh_nope", headers=admin).status_code == 404
    assert client.delete("/api/webhooks/wh_nope", headers=admin).status_code == 404
    assert client.get("/api/webhooks/wh_nope/deliveries", headers=admin).status_code == 404
    assert client.get("/api/webhooks/wh_x/deliveries?status=odd", headers=admin).status_code == 422
    for role, status in (("caseworker", 403), ("viewer", 403)):
        assert client.get("/api/webhooks", headers=auth(tokens[role])).status_code == status
        assert client.post("/api/webhooks", headers=auth(tokens[role]),
                           json={"url": "https://example.org/"}).status_code == status
    assert client.get("/api/webhooks").status_code == 401
    audit = client.get("/api/audit", headers=admin).json()["items"]
    assert any(r["path"] == "/api/webhooks" and r["method"] == "POST" for r in audit)


@pytest.mark.parametrize("url", ["http://1.2.3.999/x", "http://256.1.1.1/", "http://01.2.3.4/", "http://1.2.3/x",
                                 "http://0x7f.0.0.1/", "http://xn--zz.example/", "http://a..b/x",
                                 "http://a.-b.example/", "http://" + "a" * 64 + ".example/"])
def test_a_url_httpx_cannot_send_to_is_refused(api: tuple[TestClient, dict[str, str], Any], url: str) -> None:
    """Accepted before, these URLs made every POST raise in the deliverer (InvalidURL, IDNAError)
    and killed the subscription's worker thread on each claim."""
    client, tokens, _app = api
    answer = client.post("/api/webhooks", headers=auth(tokens["admin"]), json={"url": url})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://cases.example.org/careledger",
                                 "http://receiver/x", "http://xn--bcher-kva.example/", "https://a-b.c-d.example:443/"])
def test_usable_urls_are_still_accepted(api: tuple[TestClient, dict[str, str], Any], url: str) -> None:
    client, tokens, _app = api
    assert client.post("/api/webhooks", headers=auth(tokens["admin"]), json={"url": url}).status_code == 201
