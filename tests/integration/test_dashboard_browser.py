"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

The API runs under uvicorn (in a thread, on a free port) over a SQLite store holding the calibrated
2024H1 simulation and six months after it, applied straight through ``SqlStore.apply_batch`` (no
Kafka needed).  The tests open the page with an admin token in localStorage and check that

- the half-year report table equals ../shared/domain/h1-report.csv row by row, in its order;
- a new alert (a visit finding abuse_or_neglect, applied to the store while the page is open)
  appears in the inbox without a reload, and acknowledging it changes its status (the API's
  ``alert.handled`` event goes to a stand-in log that applies it to the store like the processor);
- English is one click away;
- the period list offers exactly the half-years and years that hold data, and the target bars
  show progress for a period with targets and "no target for this period" for the others;
- on a phone (390 px) whose Chromium sees no CJK font at all (a fontconfig with DejaVu only),
  nothing is wider than the screen, the report's items are readable, and Chinese is drawn with
  the font the dashboard serves (a control with that font blocked draws empty boxes);
- /docs and /redoc render the API's operations with every request to another host aborted.

Screenshots go to test-artifacts/ (dashboard.png at 1440 px, dashboard-phone.png at 390 px, ...).

Chromium comes from Debian (``make test`` installs it: the Makefile's ``servers`` target); Playwright
only drives it (``executable_path``), it never downloads a browser.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from careledger.settings import Settings
from infra.dashboard_font import ensure_font
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from processors.lag import LagReport
from producers.simulate.generator import SimConfig, generate
from projections import open_store
from projections.api.app import create_app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHARED_REPORT = REPO.parent / "shared" / "domain" / "h1-report.csv"
PACKAGED_REPORT = REPO / "producers" / "simulate" / "h1-report.csv"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BATCH = 5000
NEW_VISIT_ID = "browser-test-visit-abuse-1"


def report_rows() -> list[dict[str, str]]:
    path = SHARED_REPORT if SHARED_REPORT.exists() else PACKAGED_REPORT
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def grouped(value: str) -> str:
    return f"{int(value):,}"


class StoreLag:
    """Lag probe stand-in: the store is fed directly, so everything applied is 'caught up'."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def measure(self) -> LagReport:
        ends = {p: off + 1 for p, off in self.store.offsets().items()}
        return LagReport(per_projection={"sql": 0}, per_partition={"sql": {p: 0 for p in ends}}, end_offsets=ends)


class StoreLog:
    """Stands in for Kafka and the processor: events the test or the API publish (the API's
    ``alert.handled`` on acknowledge, acknowledged by the 'broker' at once) are applied to the
    store at the next offset, as the processor would apply them."""

    def __init__(self, store: Any, next_offset: int) -> None:
        self.store = store
        self.offset = next_offset
        self.published: list[dict[str, Any]] = []
        self.appended: list[dict[str, Any]] = []  # everything applied after the simulation
        self.lock = threading.Lock()

    def append(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.appended += events
            batch = [Consumed(0, self.offset + i, e) for i, e in enumerate(events)]
            self.offset += len(events)
            self.store.apply_batch(batch)

    # the EventPublisher methods the API uses
    def publish_and_wait(self, events: list[tuple[dict[str, Any], bytes | None]], timeout: float = 30.0) -> None:
        self.published += [event for event, _ in events]
        self.append([event for event, _ in events])

    def publish(self, event: dict[str, Any], *, value: bytes | None = None) -> None:
        self.publish_and_wait([(event, value)])

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@dataclasses.dataclass
class Served:
    url: str
    token: str
    store: Any
    events: list[dict[str, Any]]
    log: StoreLog


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    import uvicorn

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make servers` installs Debian's chromium")
    home = Path(tempfile.mkdtemp(prefix="careledger-dashboard-"))
    settings = dataclasses.replace(Settings.from_env(), home=home / "home", sql_url=f"sqlite:///{home / 'h1.sqlite3'}",
                                   kafka_bootstrap="127.0.0.1:1")
    store = open_store(settings.sql_url, default_rules(), topic=settings.topics.events)
    store.migrate()
    if ensure_font(install=False) is None:
        pytest.fail("no CJK source font for the dashboard's font: `make font` installs fonts-wqy-microhei")
    events = list(generate(SimConfig(calibrate="2024H1", seed=2024, tail_months=6)))
    for start in range(0, len(events), BATCH):
        store.apply_batch([Consumed(0, start + i, e) for i, e in enumerate(events[start:start + BATCH])])
    log = StoreLog(store, next_offset=len(events))
    app = create_app(settings, store=store, lag_probe=StoreLag(store), publisher=log)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    token = app.state.tokens.create("browser-test", "admin")
    try:
        yield Served(url=f"http://127.0.0.1:{port}/", token=token, store=store, events=events, log=log)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        store.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def page(served: Served, tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1440, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
        errors: list[str] = []
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20_000)
            page.goto(served.url)
            page.evaluate("t => localStorage.setItem('careledger.token', t)", served.token)
            page.reload()
            yield page
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            context.close()


def cell(row: Any, col: str) -> Any:
    return row.locator(f'td[data-col="{col}"]')


def test_dashboard_report_live_alert_and_acknowledge(served: Served, page: Any) -> None:
    # ---- the report table, for the half-year chosen in the period selector
    page.select_option("#period", "2024H1")
    page.wait_for_function("document.querySelector('#report-sub').textContent.includes('2024-06-30')")
    page.wait_for_selector("#report-table tbody tr[data-metric]")
    expected = report_rows()
    metrics = page.eval_on_selector_all("#report-table tbody tr", "rows => rows.map(r => r.dataset.metric)")
    assert metrics == [row["metric"] for row in expected]
    for want in expected:
        row = page.locator(f'#report-table tbody tr[data-metric="{want["metric"]}"]')
        where = want["metric"]
        assert cell(row, "label").inner_text().strip() == want["label_zh"], where
        for col in ("persons", "events"):
            shown = cell(row, col).inner_text().strip()
            if want[col]:
                assert shown == grouped(want[col]), (where, col, shown)
                assert cell(row, col).get_attribute("data-value") == want[col], (where, col)
            else:  # not published by the federation: not printed either
                assert shown in ("—", ""), (where, col, shown)
        yuan = cell(row, "amount_yuan").inner_text().strip()
        wan = cell(row, "amount_wan").inner_text().strip()
        if want["amount_yuan"]:
            amount = Decimal(want["amount_yuan"])
            assert yuan == f"{amount:,.2f}", (where, yuan)
            assert wan == f"{amount / 10000:,.2f}", (where, wan)
        else:
            assert yuan in ("", "—") and wan in ("", "—"), (where, yuan, wan)
        if "positions" in want["note"]:
            positions = want["note"].split()[0]
            assert cell(row, "note").get_attribute("data-positions") == positions
            assert positions in cell(row, "note").inner_text()

    # ---- the other sections rendered
    assert page.locator("#town-grid .tile[data-town]").count() == 12
    assert page.locator("#trend-chart svg .bar").count() == 12
    assert page.locator("#targets .target").count() >= 1
    page.wait_for_selector("#alerts-table tbody tr[data-alert-id]")
    page.wait_for_selector("#warnings-table tbody tr[data-rule]")
    assert page.locator("#live").get_attribute("data-state") == "ok"

    # ---- a new alert arrives while the page is open: shown without a reload
    page.evaluate("window.__noReload = true")
    person = next(e for e in served.events if e["type"] == "person.registered")
    now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0)
    visit = {"event_id": NEW_VISIT_ID, "type": "visit.completed", "version": 1, "occurred_at": now.isoformat(),
             "person_id": person["person_id"], "town": person["town"], "village": person.get("village"),
             "source": "browser-test", "payload": {"visit_kind": "home_visit", "visitor": "w-test",
                                                   "hazards": ["abuse_or_neglect"]}}
    served.log.append([visit])
    row = page.locator(f'#alerts-table tbody tr[data-event-ids~="{NEW_VISIT_ID}"]')
    row.wait_for(timeout=20_000)
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"
    assert row.get_attribute("data-severity") == "critical"
    assert row.get_attribute("data-rule") == "visit_hazard"
    status = row.locator("td.status-cell")
    assert status.get_attribute("data-state") == "open"
    assert "待处理" in status.inner_text()

    # ---- acknowledge it: the status changes (page and store)
    row.locator('button[data-action="acknowledge"]').click()
    page.wait_for_function(
        f"""document.querySelector('#alerts-table tr[data-event-ids~="{NEW_VISIT_ID}"] td.status-cell')
            ?.dataset.state === 'acknowledged'""")
    assert "已确认" in status.inner_text()
    assert "browser-test" in status.inner_text()
    assert row.locator('button[data-action="acknowledge"]').is_disabled()
    stored = served.store.alerts(person_id=person["person_id"], rule="visit_hazard")["items"]
    acked = [a for a in stored if NEW_VISIT_ID in a["event_ids"]]
    assert len(acked) == 1 and acked[0]["acknowledged_by"] == "browser-test" and acked[0]["status"] == "open"
    handled = [e for e in served.log.published if e["type"] == "alert.handled"]  # on the log first
    assert [(e["payload"]["alert_id"], e["payload"]["action"], e["payload"]["by"]) for e in handled] == \
        [(acked[0]["alert_id"], "acknowledge", "browser-test")]

    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_function("!document.querySelector('#toast').classList.contains('show')")  # toast gone
    page.wait_for_timeout(400)  # and faded out
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # ---- English is one click away (and back)
    page.click("#lang-toggle")
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.locator("#report-table thead th", has_text="Person-times").count() == 1
    assert cell(page.locator('#report-table tr[data-metric="home_visit"]'), "events").inner_text() == "3,548"
    assert page.locator(f'#alerts-table tr[data-event-ids~="{NEW_VISIT_ID}"] td.status-cell').inner_text() \
        .startswith("Acknowledged")
    page.screenshot(path=str(ARTIFACTS / "dashboard-en.png"), full_page=False)
    page.click("#lang-toggle")
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")


# ---------------------------------------------------------------------------------------------------
ACTIVITY_TYPES = {"payment.disbursed", "service.delivered", "visit.completed", "job.placed", "need.registered",
                  "job.posted"}
PHONE = {"width": 390, "height": 844}
NO_CJK_FONTS = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><dir>/usr/share/fonts/truetype/dejavu</dir><cachedir>{cache}</cachedir>
<include ignore_missing="yes">/etc/fonts/conf.d</include></fontconfig>
"""
# pixels of a few characters drawn in the page's own font stack: different characters give different
# images when a font has their glyphs; the same empty box (.notdef) when none has
GLYPHS_JS = """async () => {
  const family = getComputedStyle(document.querySelector('h1')).fontFamily;
  try { await document.fonts.load('32px careledger-cjk', '残疾人服务'); } catch (e) { /* blocked: boxes */ }
  await document.fonts.ready;
  const draw = (ch) => {
    const canvas = document.createElement('canvas'); canvas.width = canvas.height = 40;
    const ctx = canvas.getContext('2d'); ctx.font = `32px ${family}`; ctx.fillText(ch, 2, 34);
    return Array.from(ctx.getImageData(0, 0, 40, 40).data).join(',');
  };
  const images = ['残', '疾', '人', '服', '务'].map(draw);
  return { distinct: new Set(images).size,
           faces: [...document.fonts].filter((f) => f.family.includes('careledger-cjk')).map((f) => f.status) };
}"""
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth, wider = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > width + 0.5 || r.left < -0.5))
      wider.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  return { width, scrollWidth: document.documentElement.scrollWidth, wider };
}"""


def expected_periods(events: list[dict[str, Any]]) -> list[str]:
    """Half-years and years (newest first) of the months holding activity (CONTRACT dates are local)."""
    codes: set[str] = set()
    for e in events:
        if e["type"] in ACTIVITY_TYPES:
            year, month = e["occurred_at"][:4], int(e["occurred_at"][5:7])
            codes |= {year, f"{year}H{1 if month <= 6 else 2}"}
    rank = {"": 0, "H1": 1, "H2": 2}
    return sorted(codes, key=lambda c: (c[:4], rank[c[4:]]), reverse=True)


def open_page(pw: Any, served: Served, profile: Path, viewport: dict[str, int], **launch: Any) -> tuple[Any, Any, list]:
    context = pw.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=viewport,
        locale="zh-CN", timezone_id="Asia/Shanghai", **launch)
    errors: list[str] = []
    page = context.pages[0] if context.pages else context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    page.goto(served.url)
    page.evaluate("t => localStorage.setItem('careledger.token', t)", served.token)
    return context, page, errors


def choose_period(page: Any, code: str, last_day: str) -> None:
    page.select_option("#period", code)
    page.wait_for_function(f"document.querySelector('#report-sub').textContent.includes('{last_day}')")
    page.wait_for_function(f"window.careledger.state().targets?.period.to === '{last_day}'"
                           f" && !window.careledger.state().running")


def test_periods_with_data_and_target_progress_for_the_chosen_period(served: Served, page: Any) -> None:
    page.wait_for_selector("#report-table tbody tr[data-metric]")
    page.wait_for_function("window.careledger.state().periods !== null")
    offered = page.eval_on_selector_all("#period option", "os => os.map(o => o.value)")
    assert offered == ["auto", *expected_periods(served.events + served.log.appended), "custom"]
    assert {"2024H2", "2024H1", "2024", "2023H2"} <= set(offered)
    assert not {"2025", "2025H1", "2025H2", "2021H2"} & set(offered)  # no data there (only registrations in 2021)

    # 2024H2: the federation's three half-year targets and its year target all count, with progress
    choose_period(page, "2024H2", "2024-12-31")
    targets = {m: page.locator(f'#targets .target[data-metric="{m}"]') for m in
               ("new_employment", "assistive_device_fitting", "vocational_training", "accessibility_modification")}
    for metric, row in targets.items():
        progress = row.get_attribute("data-progress")
        assert progress and float(progress) > 0.2, (metric, progress)
        assert row.locator("svg.progress rect.fill").get_attribute("width") not in ("0", None), metric
    assert page.locator("#targets .target.none").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#targets-card").screenshot(path=str(ARTIFACTS / "dashboard-targets-2024H2.png"))

    # 2024H1: no half-year target; the year's target shows the year so far (up to 2024-06-30)
    choose_period(page, "2024H1", "2024-06-30")
    for metric in ("new_employment", "assistive_device_fitting", "vocational_training"):
        row = targets[metric]
        assert "none" in row.get_attribute("class").split(), metric
        assert "本期无目标" in row.inner_text() and "2024年下半年" in row.inner_text()
    year = targets["accessibility_modification"]
    assert "截至 2024-06-30" in year.inner_text()
    assert year.get_attribute("data-progress") not in (None, "")
    page.locator("#targets-card").screenshot(path=str(ARTIFACTS / "dashboard-targets-2024H1.png"))

    # 2023H2: a period with data but no target at all
    choose_period(page, "2023H2", "2023-12-31")
    assert "没有目标" in page.inner_text('[data-testid="no-targets"]')
    assert page.locator("#targets svg.progress").count() == 0


def test_phone_without_cjk_fonts_fits_the_screen_and_draws_chinese(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    cache = tmp_path / "fontconfig-cache"
    cache.mkdir()
    conf = tmp_path / "fonts.conf"
    conf.write_text(NO_CJK_FONTS.format(cache=cache), encoding="utf-8")
    env = {"FONTCONFIG_FILE": str(conf), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    phone = {"is_mobile": True, "has_touch": True, "device_scale_factor": 2, "env": env}
    with sync_playwright() as pw:
        # control: the same phone with the dashboard's font blocked draws boxes, so the check below can fail
        context, page, errors = open_page(pw, served, tmp_path / "control", PHONE, **phone)
        try:
            page.route("**/static/fonts/**", lambda route: route.abort())
            page.reload()
            page.wait_for_selector("#report-table tbody tr[data-metric]")
            control = page.evaluate(GLYPHS_JS)
            assert control["distinct"] == 1, f"this Chromium still finds a CJK font: {control}"
        finally:
            context.close()

        context, page, errors = open_page(pw, served, tmp_path / "phone", PHONE, **phone)
        try:
            page.reload()
            page.wait_for_selector("#report-table tbody tr[data-metric]")
            choose_period(page, "2024H1", "2024-06-30")
            page.wait_for_selector("#alerts-table tbody tr[data-alert-id]")
            page.wait_for_selector("#warnings-table tbody tr[data-rule]")
            assert page.locator("#kpis .kpi-delta").count() == 0  # ▲ marks growth, not another period
            glyphs = page.evaluate(GLYPHS_JS)
            assert glyphs["distinct"] == 5 and glyphs["faces"] == ["loaded"], glyphs

            fit = page.evaluate(OVERFLOW_JS)
            assert fit["width"] == PHONE["width"] and fit["scrollWidth"] == PHONE["width"], fit
            assert fit["wider"] == [], fit["wider"][:10]
            # the report's items (项目) are card titles on a phone: whole lines, not a character per line
            labels = page.eval_on_selector_all(  # width of the cell, and line boxes of its text
                "#report-table td.label",
                "cells => cells.map(c => { const range = document.createRange(); range.selectNodeContents(c);"
                " return [c.textContent, c.getBoundingClientRect().width,"
                " new Set([...range.getClientRects()].map(r => Math.round(r.top))).size]; })")
            assert len(labels) == len(report_rows())
            for text, width, lines in labels:
                assert width > 0.75 * PHONE["width"] and lines == 1, (text, width, lines)
            assert page.locator("#report-table thead").is_hidden()  # stacked cards, each cell labelled
            home = page.locator('#report-table tr[data-metric="home_visit"] td[data-col="events"]')
            assert home.get_attribute("data-label") == "人次" and home.inner_text() == "3,548"
            ARTIFACTS.mkdir(exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=False)
            page.screenshot(path=str(ARTIFACTS / "dashboard-phone-full.png"), full_page=True)
            assert not errors, errors
        finally:
            context.close()


def test_desk_layout_fits_1440(served: Served, page: Any) -> None:
    page.wait_for_selector("#report-table tbody tr[data-metric]")
    choose_period(page, "2024H1", "2024-06-30")
    fit = page.evaluate(OVERFLOW_JS)
    assert fit["scrollWidth"] == fit["width"] == 1440 and fit["wider"] == [], fit
    assert page.locator("#report-table thead").is_visible()


def test_error_messages_read_problem_details_and_the_older_shapes(served: Served, page: Any) -> None:
    page.wait_for_function("typeof window.careledger?.errorText === 'function'")
    shapes = {  # RFC 9457 problem details (the API's error shape), and what it answered before
        "problem": {"type": "about:blank", "title": "Unauthorized", "status": 401,
                    "detail": "this endpoint needs Authorization: Bearer TOKEN"},
        "title only": {"type": "about:blank", "title": "Not Found", "status": 404},
        "detail string": {"detail": "no alert A1"},
        "message": {"detail": [{"loc": ["query", "from"], "msg": "bad"}], "message": "from: not a date"},
        "validation list": {"detail": [{"loc": ["query", "as_of"], "msg": "Input should be a valid date"}]},
    }
    got = {k: page.evaluate("d => window.careledger.errorText(d, 'HTTP')", v) for k, v in shapes.items()}
    assert got == {"problem": "this endpoint needs Authorization: Bearer TOKEN", "title only": "Not Found",
                   "detail string": "no alert A1", "message": "from: not a date",
                   "validation list": "query.as_of: Input should be a valid date"}
    assert page.evaluate("window.careledger.errorText(null, 'HTTP 502')") == "HTTP 502"
    # and a real error answer of the API, through the page's own client
    status, text = page.evaluate("""async () => {
        const r = await fetch('/api/warnings', { headers: { Authorization: 'Bearer nope' } });
        return [r.status, window.careledger.errorText(await r.json(), 'HTTP')]; }""")
    assert status == 401 and "token" in text and text != "HTTP", text


@pytest.mark.parametrize("path, ready", [
    ("docs", "() => document.querySelectorAll('.opblock').length"),
    ("redoc", "() => document.querySelectorAll('[data-section-id^=\"operation/\"], [data-section-id*=\"/paths/\"]').length"),
])
def test_api_docs_render_offline(served: Served, tmp_path: Path, path: str, ready: str) -> None:
    from urllib.parse import urlparse

    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900})
        blocked: list[str] = []

        def offline(route: Any) -> None:  # the machine (and a federation's intranet) has no internet
            if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort("internetdisconnected")

        try:
            context.route("**/*", offline)
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(served.url + path)
            page.wait_for_function(f"({ready})() >= 10", timeout=30_000)
            operations = page.evaluate(f"({ready})()")
            assert operations >= 15, operations
            assert page.get_by_text("/api/warnings").count() + page.get_by_text("Need warnings").count() > 0
            assert blocked == [], blocked
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"api-{path}-offline.png"))
        finally:
            context.close()
