"""Every read endpoint over a real SqlStore (SQLite): answers, validation errors, suppression."""

from __future__ import annotations

import csv
import dataclasses
from typing import Any

import pytest
from fastapi.testclient import TestClient

from careledger.settings import Settings
from producers.publisher import EventPublisher
from projections.api import report as report_mod
from projections.api.app import create_app
from schemas.validation import validate_event
from tests.unit.producers.conftest import FakeProducer
from tests.unit.projections.api.conftest import TOWN_A, TOWN_B, StubProbe, auth

# ----------------------------------------------------------------------------- counts


def test_counts_exact_for_admin(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["admin"])
    assert client.get("/api/counts?kind=payment", headers=h).json() == {
        "events": 8, "persons": 7, "amount_fen": 380_000, "positions": 0}
    assert client.get("/api/counts", params={"kind": "payment", "key": "nursing_subsidy"}, headers=h).json() == {
        "events": 1, "persons": 1, "amount_fen": 30_000, "positions": 0}
    assert client.get("/api/counts", params={"kind": "payment", "town": TOWN_B, "from": "2024-03-05",
                                             "to": "2024-03-05"}, headers=h).json()["events"] == 1
    assert client.get("/api/counts", params={"kind": "payment", "from": "2024-03-06"},
                      headers=h).json()["events"] == 1
    assert client.get("/api/counts?kind=service&key=nope", headers=h).json() == {
        "events": 0, "persons": 0, "amount_fen": 0, "positions": 0}


def test_counts_anonymous_large_cell_has_contract_shape(client: TestClient) -> None:
    # registrations: 7 persons district-wide, published (the town split is what gets suppressed)
    answer = client.get("/api/counts", params={"kind": "person"}).json()
    assert answer == {"events": 7, "persons": 7, "amount_fen": 0, "positions": 0}


SUPPRESSED = {"events": None, "persons": None, "amount_fen": None, "positions": None, "suppressed": True}


@pytest.mark.parametrize("who,town,suppressed", [
    (None, None, True), ("viewer", None, True), ("viewer", TOWN_B, True),
    ("caseworker", TOWN_B, True),       # a caseworker of town A asking about town B
    ("caseworker_b", TOWN_B, False),    # ... and of town B about its own town
    ("caseworker_b", None, True),       # the whole district is not "their town"
    ("admin", None, False),
])
def test_small_cell_suppression(client: TestClient, tokens: dict[str, str], who: str | None, town: str | None,
                                suppressed: bool) -> None:
    params = {"kind": "payment", "key": "nursing_subsidy", **({"town": town} if town else {})}
    answer = client.get("/api/counts", params=params, headers=auth(tokens.get(who or ""))).json()
    if suppressed:
        assert answer == SUPPRESSED
    else:
        assert answer == {"events": 1, "persons": 1, "amount_fen": 30_000, "positions": 0}


def test_postings_and_empty_cells_are_never_suppressed(client: TestClient) -> None:
    assert client.get("/api/counts?kind=posting").json() == {"events": 1, "persons": 0, "amount_fen": 0,
                                                             "positions": 3}
    assert client.get("/api/counts?kind=job").json()["persons"] == 0


def test_suppression_threshold_from_settings(settings: Any, store: Any) -> None:
    app = create_app(dataclasses.replace(settings, small_cell_threshold=1), store=store, lag_probe=StubProbe())
    answer = TestClient(app).get("/api/counts?kind=payment&key=nursing_subsidy").json()
    assert answer["persons"] == 1 and "suppressed" not in answer


def test_grouped_counts(client: TestClient, tokens: dict[str, str]) -> None:
    rows = client.get("/api/counts/grouped?kind=payment&group_by=town&group_by=month",
                      headers=auth(tokens["admin"])).json()["rows"]
    assert rows == [
        {"town": TOWN_B, "month": "2024-03", "events": 1, "persons": 1, "amount_fen": 30_000, "positions": 0},
        {"town": TOWN_A, "month": "2024-03", "events": 7, "persons": 6, "amount_fen": 350_000, "positions": 0},
    ]
    repeated = client.get("/api/counts/grouped", params=[("kind", "payment"), ("group_by", "town"),
                                                         ("group_by", "month"), ("group_by", "town")],
                          headers=auth(tokens["admin"]))
    assert repeated.json()["rows"] == rows and repeated.json()["group_by"] == ["town", "month"]
    by_key = client.get("/api/counts/grouped?kind=payment&group_by=key&town=" + TOWN_A,
                        headers=auth(tokens["admin"])).json()["rows"]
    assert by_key == [{"key": "living_subsidy", "events": 7, "persons": 6, "amount_fen": 350_000, "positions": 0}]


def test_grouped_counts_suppressed_per_row(client: TestClient, tokens: dict[str, str]) -> None:
    rows = client.get("/api/counts/grouped?kind=payment&group_by=town").json()["rows"]
    # town B is a small cell; town A is hidden with it, or the district total minus A would be B;
    # and as the caseworker of town A knows A exactly, the total goes too (A's caseworker would
    # subtract their own town): see test_suppression_attack.py for the attacks themselves
    assert rows == [{"town": TOWN_B, **SUPPRESSED}, {"town": TOWN_A, **SUPPRESSED}]
    assert client.get("/api/counts?kind=payment").json() == SUPPRESSED
    own = client.get("/api/counts/grouped?kind=payment&group_by=town", headers=auth(tokens["caseworker_b"]))
    assert own.json()["rows"][0] == {"town": TOWN_B, "events": 1, "persons": 1, "amount_fen": 30_000,
                                     "positions": 0}
    assert own.json()["rows"][1] == {"town": TOWN_A, **SUPPRESSED}


# ----------------------------------------------------------------------------- validation
def assert_problem(response: Any, status: int, param: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document naming ``param`` in its detail and (422) its errors."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body) and body["status"] == status
    if param is not None:
        assert f"'{param}'" in body["detail"], body["detail"]
    if status == 422:
        assert body["type"] == "urn:careledger:problem:invalid-request"
        assert param is None or any(param in e["loc"] for e in body["errors"])
        assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])  # never the input
    return body


@pytest.mark.parametrize("url,param", [
    ("/api/counts", "kind"),
    ("/api/counts?kind=bogus", "kind"),
    ("/api/counts?kind=payment&from=2024-02-30", "from"),
    ("/api/counts?kind=payment&to=2024-13-01", "to"),
    ("/api/counts?kind=payment&from=20240101", "from"),
    ("/api/counts?kind=payment&from=0", "from"),  # pydantic alone reads this as 1970-01-01
    ("/api/counts?kind=payment&from=2024-01-01T00:00:00", "from"),
    ("/api/counts?kind=payment&snapshot=", "snapshot"),
    ("/api/counts/grouped?kind=payment", "group_by"),
    ("/api/counts/grouped?kind=payment&group_by=person_id", "group_by"),
    ("/api/counts/grouped?kind=payment&group_by=town,month", "group_by"),
    ("/api/counts/grouped?kind=payment&group_by=", "group_by"),
    ("/api/counts/grouped?kind=nope&group_by=town", "kind"),
    ("/api/report?from=2024-02-30", "from"),
    ("/api/report?from=0", "from"),
])
def test_bad_aggregate_parameters_are_422(client: TestClient, url: str, param: str) -> None:
    assert_problem(client.get(url), 422, param)


@pytest.mark.parametrize("url", ["/api/counts?kind=payment&from=2024-05-01&to=2024-04-01",
                                 "/api/report?from=2024-07-01&to=2024-06-30"])
def test_an_empty_range_counts_nothing(client: TestClient, tokens: dict[str, str], url: str) -> None:
    """``from`` after ``to`` is a valid request for an empty range (the schema cannot forbid it)."""
    answer = client.get(url, headers=auth(tokens["admin"]))
    assert answer.status_code == 200
    body = answer.json()
    assert (body.get("events"), body.get("persons")) == (0, 0) if "rows" not in body else \
        all(r["events"] == 0 for r in body["rows"])


@pytest.mark.parametrize("url,param", [
    ("/api/alerts?limit=10001", "limit"),
    ("/api/alerts?limit=-1", "limit"),
    ("/api/alerts?offset=-1", "offset"),
    ("/api/alerts?limit=ten", "limit"),
    ("/api/alerts?status=closed", "status"),
    ("/api/warnings?as_of=2024-02-30", "as_of"),
    ("/api/warnings?as_of=0325-06-22", "as_of"),
    ("/api/warnings?limit=20000", "limit"),
    ("/api/audit?limit=20000", "limit"),
    ("/api/webhooks?include_deleted=yes", "include_deleted"),
])
def test_bad_person_level_parameters_are_422(client: TestClient, tokens: dict[str, str], url: str,
                                             param: str) -> None:
    assert_problem(client.get(url, headers=auth(tokens["admin"])), 422, param)


@pytest.mark.parametrize("status,call", [
    (401, lambda c, t: c.get("/api/alerts")),
    (401, lambda c, t: c.get("/api/counts?kind=payment", headers=auth("cl_revoked"))),
    (403, lambda c, t: c.get("/api/audit", headers=auth(t["viewer"]))),
    (404, lambda c, t: c.get("/api/persons/nobody/timeline", headers=auth(t["admin"]))),
    (404, lambda c, t: c.get("/api/no-such-route")),
    (404, lambda c, t: c.post("/api/alerts/Anope/resolve", headers=auth(t["admin"]))),
    (405, lambda c, t: c.put("/api/counts?kind=payment")),
    (400, lambda c, t: c.post("/api/webhooks", headers={**auth(t["admin"]), "Content-Type": "application/json"},
                              content=b"{not json")),
    (422, lambda c, t: c.post("/api/webhooks", headers=auth(t["admin"]), json={"url": ""})),
])
def test_every_error_is_a_problem_document(client: TestClient, tokens: dict[str, str], status: int,
                                           call: Any) -> None:
    assert_problem(call(client, tokens), status)


def test_405_lists_every_method_of_the_path(client: TestClient, tokens: dict[str, str]) -> None:
    """Starlette names only the first route's methods; GET and DELETE share /api/webhooks/{id}."""
    answer = client.request("OPTIONS", "/api/webhooks/wh_x", headers=auth(tokens["admin"]))
    assert_problem(answer, 405)
    assert {m.strip() for m in answer.headers["allow"].split(",")} >= {"GET", "DELETE"}
    answer = client.request("PATCH", "/api/webhooks", headers=auth(tokens["admin"]))
    assert {m.strip() for m in answer.headers["allow"].split(",")} >= {"GET", "POST"}


def test_validation_never_echoes_input(client: TestClient) -> None:
    response = client.get("/api/counts?kind=110101199003071233")
    assert response.status_code == 422 and "110101199003071233" not in response.text


def test_unexpected_error_is_500_json_without_internals(settings: Any, store: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def counts(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("password=hunter2 at /srv/db")

    app = create_app(settings, store=Broken(), lag_probe=StubProbe())
    admin = auth(app.state.tokens.create("root", "admin"))
    response = TestClient(app, raise_server_exceptions=False).get("/api/counts?kind=payment", headers=admin)
    body = assert_problem(response, 500)
    assert body["detail"] == "internal server error; see the API log"
    assert "hunter2" not in response.text
    assert "hunter2" in caplog.text  # logged for the operator


# ----------------------------------------------------------------------------- report / targets
def test_report_rows_follow_the_packaged_definition(client: TestClient, tokens: dict[str, str]) -> None:
    with report_mod.REPORT_CSV.open(encoding="utf-8") as fh:
        definition = list(csv.DictReader(fh))
    answer = client.get("/api/report?from=2024-01-01&to=2024-06-30", headers=auth(tokens["admin"])).json()
    assert (answer["from"], answer["to"]) == ("2024-01-01", "2024-06-30")
    assert [r["metric"] for r in answer["rows"]] == [d["metric"] for d in definition]
    assert [r["label_zh"] for r in answer["rows"]] == [d["label_zh"] for d in definition]
    by_metric = {r["metric"]: r for r in answer["rows"]}
    assert by_metric["living_subsidy"] == {
        "metric": "living_subsidy", "kind": "payment", "key": "living_subsidy", "label_zh": "困难残疾人生活补贴",
        "persons": 6, "events": 7, "amount_fen": 350_000, "amount_yuan": 3500.0, "positions": None}
    assert by_metric["nursing_subsidy"]["amount_yuan"] == 300.0
    assert by_metric["job_postings"]["positions"] == 3
    assert by_metric["new_registrations"]["persons"] == 7
    assert by_metric["home_visit"]["events"] == 1
    assert by_metric["employment_need"]["persons"] == 1


def test_report_suppressed_for_anonymous_and_default_period(client: TestClient) -> None:
    rows = {r["metric"]: r for r in client.get("/api/report?from=2024-01-01&to=2024-06-30").json()["rows"]}
    assert rows["nursing_subsidy"]["suppressed"] is True and rows["nursing_subsidy"]["persons"] is None
    # the payment total minus living subsidy would be nursing's 1: one of the two is hidden too
    total = client.get("/api/counts?kind=payment&from=2024-01-01&to=2024-06-30").json()
    assert rows["living_subsidy"].get("suppressed") or total.get("suppressed")
    assert rows["new_registrations"]["persons"] == 7 and "suppressed" not in rows["new_registrations"]
    assert rows["job_postings"]["positions"] == 3
    assert_problem(client.get("/api/report?from=2024-01-01&to=2024-05-31"), 403)  # not a calendar period
    default = client.get("/api/report")
    assert default.status_code == 200 and default.json()["from"][5:] in ("01-01", "07-01")


def test_targets_progress(client: TestClient, tokens: dict[str, str], settings: Any) -> None:
    items = client.get("/api/targets", headers=auth(tokens["admin"])).json()["items"]
    by_metric = {t["metric"]: t for t in items}
    with settings.targets_path.open(encoding="utf-8") as fh:
        assert [t["metric"] for t in items] == [row["metric"] for row in csv.DictReader(fh)]
    vt = by_metric["vocational_training"]
    assert (vt["period"], vt["from"], vt["to"], vt["current"], vt["target"]) == (
        "2024H2", "2024-07-01", "2024-12-31", 1, 360)
    assert vt["progress"] == round(1 / 360, 4)
    am = by_metric["accessibility_modification"]
    assert (am["from"], am["to"], am["current"]) == ("2024-01-01", "2024-12-31", 0)
    anonymous = {t["metric"]: t for t in client.get("/api/targets").json()["items"]}
    assert anonymous["vocational_training"]["current"] is None and anonymous["vocational_training"]["suppressed"]


@pytest.mark.parametrize("period,first,last", [
    ("2024", "2024-01-01", "2024-12-31"), ("2024H1", "2024-01-01", "2024-06-30"),
    ("2024H2", "2024-07-01", "2024-12-31"), ("2024Q1", "2024-01-01", "2024-03-31"),
    ("2024-02", "2024-02-01", "2024-02-29"),
])
def test_period_range(period: str, first: str, last: str) -> None:
    lo, hi = report_mod.period_range(period)
    assert (lo.isoformat(), hi.isoformat()) == (first, last)


def test_bad_period_is_refused() -> None:
    with pytest.raises(report_mod.DefinitionError):
        report_mod.period_range("2024H3")


# ----------------------------------------------------------------------------- person level
def test_alerts(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["admin"])
    answer = client.get("/api/alerts", headers=h).json()
    assert answer["total"] == 2
    assert {a["rule"] for a in answer["items"]} == {"visit_hazard", "duplicate_payment"}
    for item in answer["items"]:
        assert {"alert_id", "rule", "severity", "person_id", "status", "event_ids", "detected_at"} <= set(item)
    dup = client.get("/api/alerts?rule=duplicate_payment", headers=h).json()["items"][0]
    assert (dup["person_id"], dup["program"], dup["period"]) == ("a1", "living_subsidy", "2024-03")
    assert client.get("/api/alerts?status=resolved", headers=h).json() == {"total": 0, "items": []}
    page = client.get("/api/alerts?limit=1&offset=1", headers=h).json()
    assert page["total"] == 2 and len(page["items"]) == 1


def test_caseworker_sees_only_their_towns(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["caseworker"])
    alerts = client.get("/api/alerts", headers=h).json()
    assert alerts["total"] == 1 and alerts["items"][0]["person_id"] == "a1"
    assert client.get("/api/alerts?person_id=a1", headers=h).json()["total"] == 1
    assert client.get("/api/alerts?person_id=b1", headers=h).status_code == 403
    assert client.get("/api/alerts?person_id=nobody", headers=h).status_code == 403
    warnings = client.get("/api/warnings?as_of=2024-06-30", headers=h).json()
    assert warnings["total"] > 0 and {w["town"] for w in warnings["items"]} == {TOWN_A}
    assert client.get("/api/warnings?person_id=b1", headers=h).status_code == 403
    assert client.get("/api/persons/a2/timeline", headers=h).status_code == 200
    assert client.get("/api/persons/b1/timeline", headers=h).status_code == 403
    assert client.get("/api/persons/nobody/timeline", headers=h).status_code == 403
    other = client.get("/api/alerts", headers=auth(tokens["caseworker_b"])).json()
    assert [a["person_id"] for a in other["items"]] == ["b1"]


def test_warnings(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["admin"])
    answer = client.get("/api/warnings?as_of=2024-06-30&rule=need_unmet", headers=h).json()
    assert answer["as_of"] == "2024-06-30" and answer["total"] == 1
    [item] = answer["items"]
    assert (item["person_id"], item["need_id"], item["since"]) == ("a2", "n-a2", "2024-03-16")
    assert client.get("/api/warnings?as_of=2024-02-01&rule=need_unmet", headers=h).json()["total"] == 0
    today = client.get("/api/warnings", headers=h)
    assert today.status_code == 200 and len(today.json()["as_of"]) == 10


def test_timeline(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["admin"])
    answer = client.get("/api/persons/a1/timeline", headers=h).json()
    assert answer["person"]["town"] == TOWN_A
    assert [e["event_id"] for e in answer["events"]] == ["reg-a1", "pay-a1", "pay-a1-again"]
    assert [a["rule"] for a in answer["alerts"]] == ["duplicate_payment"]
    assert client.get("/api/persons/nobody/timeline", headers=h).status_code == 404


def test_acknowledge_and_resolve_are_published_as_events_then_recorded(
        settings: Any, store: Any, probe: StubProbe) -> None:
    """The log stays the source of truth: each action is an ``alert.handled`` event on Kafka
    (keyed by the person), acknowledged by the broker before the store records it."""
    producer = FakeProducer()
    publisher = EventPublisher(settings, producer=producer)
    with TestClient(create_app(settings, store=store, lag_probe=probe, publisher=publisher)) as client:
        tokens = {"admin": client.app.state.tokens.create("root", "admin"),
                  "caseworker": client.app.state.tokens.create("cw-a", "caseworker", towns=[TOWN_A])}
        admin, cw = auth(tokens["admin"]), auth(tokens["caseworker"])
        alerts = {a["person_id"]: a["alert_id"] for a in client.get("/api/alerts", headers=admin).json()["items"]}

        assert client.post(f"/api/alerts/{alerts['b1']}/acknowledge", headers=cw).status_code == 403
        assert client.post("/api/alerts/Anope/acknowledge", headers=cw).status_code == 404
        assert client.post("/api/alerts/Anope/resolve", headers=admin).status_code == 404
        assert producer.messages(settings.topics.events) == []

        acked = client.post(f"/api/alerts/{alerts['a1']}/acknowledge", headers=cw, json={"note": "called family"})
        assert acked.status_code == 200
        assert acked.json()["status"] == "open" and acked.json()["acknowledged_by"] == "cw-a"
        resolved = client.post(f"/api/alerts/{alerts['b1']}/resolve", headers=admin)
        assert resolved.status_code == 200
        assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_by"] == "root"
        assert client.get("/api/alerts?status=resolved", headers=admin).json()["total"] == 1
        too_long = client.post(f"/api/alerts/{alerts['a1']}/acknowledge", headers=cw, json={"note": "x" * 3000})
        assert too_long.status_code == 422

    published = producer.messages(settings.topics.events)
    assert [(key, e["type"], e["payload"]["action"], e["payload"]["by"], e["payload"]["note"])
            for key, e in published] == [
        ("a1", "alert.handled", "acknowledge", "cw-a", "called family"),
        ("b1", "alert.handled", "resolve", "root", None)]
    assert all(validate_event(e).ok for _, e in published)
    assert published[0][1]["occurred_at"] == acked.json()["acknowledged_at"]


def test_an_action_the_log_did_not_take_is_not_recorded(settings: Any, store: Any, probe: StubProbe) -> None:
    producer = FakeProducer(fail_topics={settings.topics.events})
    publisher = EventPublisher(settings, producer=producer)
    with TestClient(create_app(settings, store=store, lag_probe=probe, publisher=publisher)) as client:
        admin = auth(client.app.state.tokens.create("root", "admin"))
        alert = client.get("/api/alerts", headers=admin).json()["items"][0]
        answer = client.post(f"/api/alerts/{alert['alert_id']}/resolve", headers=admin)
        assert answer.status_code == 503
        assert client.get("/api/alerts?status=resolved", headers=admin).json()["total"] == 0


# ----------------------------------------------------------------------------- ops
def test_status_with_probe(client: TestClient, probe: StubProbe) -> None:
    probe.report.per_projection["sql"] = 4
    probe.report.per_partition["sql"] = {0: 3, 1: 1}
    answer = client.get("/api/status").json()
    assert answer["lag"] == 4 and answer["caught_up"] is False
    assert answer["projections"] == {"sql": {"lag": 4, "partitions": {"0": 3, "1": 1}}}
    assert answer["events_end_offsets"] == {"0": 10, "1": 7}
    metrics = client.get("/metrics").text
    assert 'careledger_projection_lag_events{projection="sql"} 4.0' in metrics


def test_status_caught_up(client: TestClient) -> None:
    assert client.get("/api/status").json()["lag"] == 0
    assert client.get("/api/status").json()["caught_up"] is True


def test_status_without_kafka_is_503(client: TestClient, probe: StubProbe) -> None:
    probe.error = OSError("connection refused")
    response = client.get("/api/status")
    assert "unreachable" in assert_problem(response, 503)["detail"]
    ready = client.get("/readyz")
    body = assert_problem(ready, 503)
    assert body["ready"] is False and body["store"] == "ok" and body["kafka"] != "ok" and "kafka" in body["detail"]


def test_status_default_probe_without_broker_is_503(settings: Any, store: Any) -> None:
    # the real LagProbe against a port where nothing listens
    app = create_app(dataclasses.replace(settings, kafka_bootstrap="127.0.0.1:9"), store=store)
    response = TestClient(app).get("/api/status")
    assert "127.0.0.1:9" in assert_problem(response, 503)["detail"]


def test_health_ready_metrics_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "store": "ok", "kafka": "ok"}
    client.get("/api/counts?kind=payment")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'careledger_api_requests_total{method="GET",route="/api/counts",status="200"}' in metrics.text
    spec = client.get("/openapi.json").json()
    assert "/api/counts" in spec["paths"] and "/api/events" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_anonymous_callers_get_what_a_viewer_gets_by_default(store: Any, probe: Any, tmp_path: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 item 5: without a token, small cells are suppressed like for a viewer (the default
    setting); an operator can still opt in to exact counts (CARELEDGER_ANONYMOUS_AGGREGATES=exact)."""
    monkeypatch.delenv("CARELEDGER_ANONYMOUS_AGGREGATES", raising=False)
    defaults = dataclasses.replace(Settings.from_env(), home=tmp_path / "h", sql_url=f"sqlite:///{tmp_path / 'x'}")
    assert defaults.anonymous_aggregates == "suppressed"
    params = {"kind": "service", "key": "vocational_training"}
    with TestClient(create_app(defaults, store=store, lag_probe=probe)) as client:
        viewer = auth(client.app.state.tokens.create("v", "viewer"))
        anonymous = client.get("/api/counts", params=params).json()
        assert anonymous == SUPPRESSED == client.get("/api/counts", params=params, headers=viewer).json()
    monkeypatch.setenv("CARELEDGER_ANONYMOUS_AGGREGATES", "exact")
    opted_in = dataclasses.replace(defaults, anonymous_aggregates=Settings.from_env().anonymous_aggregates)
    with TestClient(create_app(opted_in, store=store, lag_probe=probe)) as client:
        answer = client.get("/api/counts", params=params).json()
    assert answer == {"events": 1, "persons": 1, "amount_fen": 0, "positions": 0}


def test_status_lists_a_store_that_does_not_answer(client: TestClient, probe: StubProbe) -> None:
    """ClickHouse down: SQL lag is still reported, the silent store is named, not blamed on Kafka."""
    probe.report.unavailable["clickhouse"] = "NetworkError: connection refused"
    answer = client.get("/api/status")
    assert answer.status_code == 200
    body = answer.json()
    assert body["lag"] == 0 and body["degraded"] is True
    assert body["projections"]["clickhouse"] == {"lag": None, "unavailable": "NetworkError: connection refused"}
