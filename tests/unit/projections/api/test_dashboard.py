"""The dashboard page and its assets: served by the API, public, covered by the policy matrix."""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal

import pytest

from projections.api import dashboard
from projections.api.policy import POLICIES, PUBLIC, route_paths
from projections.api.report import REPORT_CSV
from tests.unit.projections.api.conftest import auth

ASSETS = ["dashboard.js", "dashboard.css", "i18n.js", "charts.js", "favicon.svg"]


def test_page_is_served_with_the_report_layout(client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    body = r.text
    assert "<html" in body and 'lang="zh-CN"' in body
    for asset in ASSETS:
        assert f"/static/{asset}" in body
    assert dashboard.LAYOUT_MARK not in body
    layout = json.loads(re.search(r'<script id="report-layout" type="application/json">(.*?)</script>',
                                  body, re.S).group(1))
    with REPORT_CSV.open(encoding="utf-8") as fh:
        metrics = [row["metric"] for row in csv.DictReader(fh)]
    assert list(layout) == metrics
    # the federation publishes subsidies as person-times only, postings as positions
    assert layout["living_subsidy"]["persons"] is False and layout["living_subsidy"]["events"] is True
    assert layout["job_postings"]["positions"] is True and layout["job_postings"]["events"] is False
    assert layout["new_employment"] == {"persons": True, "events": True, "amount": False, "positions": False,
                                        "note": "job.placed events in the half-year"}


@pytest.mark.parametrize("asset", ASSETS)
def test_static_assets_are_served(client, asset: str) -> None:
    r = client.get(f"/static/{asset}")
    assert r.status_code == 200, r.text
    assert r.content == (dashboard.STATIC_DIR / asset).read_bytes()
    expected = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}[asset.rsplit(".", 1)[1]]
    assert r.headers["content-type"].startswith(expected)


def test_head_requests(client) -> None:
    assert client.head("/").status_code == 200
    assert client.head("/static/dashboard.js").status_code == 200


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../app.py", "/static/%2e%2e/app.py",
                                  "/static/..%2fapp.py", "/static/", "/static/%2e%2e/%2e%2e/careledger/rules.toml"])
def test_static_serves_nothing_outside_its_folder(client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_static_file_guard() -> None:
    from fastapi import HTTPException

    assert dashboard.static_file("i18n.js") == dashboard.STATIC_DIR / "i18n.js"
    for bad in ["", "../app.py", "/etc/passwd", "..\\app.py", "a\x00b", "../../careledger/rules.toml"]:
        with pytest.raises(HTTPException):
            dashboard.static_file(bad)


def test_page_and_assets_are_public(app, client, tokens: dict[str, str]) -> None:
    assert POLICIES["/"] == PUBLIC
    assert POLICIES["/static/{path:path}"] == PUBLIC
    paths = route_paths(app.router.routes)
    assert "/" in paths and "/static/{path:path}" in paths
    # public: an invalid token is not even looked at, and the page is the same for everyone
    anonymous = client.get("/").text
    assert client.get("/", headers=auth("not-a-token")).text == anonymous
    assert client.get("/static/dashboard.js", headers=auth(tokens["viewer"])).status_code == 200
    # not in the OpenAPI description (it is a page, not an API)
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_page_reads_the_api_paths_it_needs() -> None:
    modules = sorted((dashboard.STATIC_DIR / "js").rglob("*.js"))  # the views dashboard.js imports
    js = "".join(p.read_text(encoding="utf-8") for p in [dashboard.STATIC_DIR / "dashboard.js", *modules])
    for path in ["/api/report", "/api/counts/grouped", "/api/targets", "/api/status", "/api/alerts",
                 "/api/warnings", "/api/alerts/stream"]:
        assert path in js
    for path in ["/api/report", "/api/counts/grouped", "/api/targets", "/api/status", "/api/alerts",
                 "/api/alerts/{alert_id}/acknowledge", "/api/alerts/{alert_id}/resolve", "/api/warnings"]:
        assert path in POLICIES
    # no network beyond the API: the machine (and a federation's intranet) has no internet
    for name in ["index.html", *ASSETS, *(str(p.relative_to(dashboard.STATIC_DIR)) for p in modules)]:
        text = (dashboard.STATIC_DIR / name).read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']https?://""", text), name
        hosts = re.findall(r"""["'](?:https?:)?//([a-z0-9.-]+\.[a-z]{2,})""", text)
        assert set(hosts) <= {"www.w3.org"}, (name, hosts)  # XML namespaces are names, not fetched


def test_every_english_word_has_a_chinese_one() -> None:
    text = (dashboard.STATIC_DIR / "i18n.js").read_text(encoding="utf-8")
    zh = text[text.index("zh: {"):text.index("en: {")]
    en = text[text.index("en: {"):text.index("window.I18N_NAMES")]
    keys = lambda block: set(re.findall(r"^\s+(\w+):", block, re.M))  # noqa: E731
    assert keys(zh) == keys(en)
    html = (dashboard.STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for key in re.findall(r'data-i18n="(\w+)"', html):
        assert key in keys(zh), key


def test_demo_command_is_registered_and_checks_the_report() -> None:
    from careledger.cli import build_parser
    from infra import demo

    args = build_parser().parse_args(["demo", "--rate", "500/s", "--no-progress"])
    assert args.func is demo.run and args.rate == 500.0
    published = demo.published_report()
    rows = []
    for want in published:
        rows.append({"metric": want["metric"], "kind": "x",
                     "persons": int(want["persons"]) if want["persons"] else 7,
                     "events": int(want["events"]) if want["events"] else 9,
                     "amount_fen": int(Decimal(want["amount_yuan"]) * 100) if want["amount_yuan"] else None,
                     "positions": int(want["note"].split()[0]) if "positions" in want["note"] else None})
    assert demo.compare_report(rows, published) == []
    rows[3]["events"] += 1
    rows[-1]["persons"] *= 2
    problems = demo.compare_report(rows, published)
    assert len(problems) == 2 and problems[0].startswith(published[3]["metric"] + ".events")
    assert demo.compare_report(rows[1:], published)[0] == f"{published[0]['metric']}: missing from /api/report"
