"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

The API runs under uvicorn (in a thread, on a free port) over a SQLite store holding the calibrated
2024H1 simulation and six months after it (with the simulator's synthetic names and phones),
applied straight through ``SqlStore.apply_batch`` (no Kafka needed).  What the API publishes (the
``alert.handled`` and ``warning.snoozed`` events of people's actions) goes to a stand-in log that
applies it to the store at the next offset, as the processor would.  The tests check that

- the half-year report table equals ../shared/domain/h1-report.csv row by row, in its order; a new
  alert (applied while the page is open) appears in the work queue without a reload, and
  acknowledging it changes its status; English is one click away;
- a caseworker (one town) gets the work queue of that town only - its summary, then the list in
  queue order, with the persons' names (no name of another town) - finds a person by ID number
  (the number never reaches the address or the browser's storage), opens the person page, assigns,
  acknowledges and resolves with a note, at 1440 px and at 390 px; a replay (a fresh store built
  from the same events plus the ``alert.handled`` events the API published, in order) shows those
  alerts resolved, with the notes in their history, on its own person page;
- the warnings queue: its summary per town and rule equals the API's, the list is oldest first,
  and a warning is snoozed with a date and a reason (then shown when asked for the snoozed ones);
- a viewer's token sees the figures and no person: no name anywhere, the person-level views locked;
- the period list offers exactly the half-years and years that hold data, and the target bars
  show progress for a period with targets and "no target for this period" for the others;
- on a phone (390 px) nothing is wider than the screen (every view, and the action dialog); whose
  Chromium sees no CJK font at all (a fontconfig with DejaVu only), Chinese is drawn with the font
  the dashboard serves (a control with that font blocked draws empty boxes);
- /docs and /redoc render the API's operations with every request to another host aborted.

One browser serves every test (a new context each); screenshots go to test-artifacts/
(dashboard.png, dashboard-inbox.png, dashboard-person-phone.png, ...).  With
CARELEDGER_UPDATE_DOCS_IMG=1 the pictures of the docs are copied there too (docs/dashboard.png,
docs/dashboard-phone.png, docs/img/inbox-desk.png, docs/img/person-phone.png).

Chromium comes from Debian (``make test`` installs it: the Makefile's ``servers`` target); Playwright
only drives it (``executable_path``), it never downloads a browser.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from careledger.settings import Settings
from infra.dashboard_font import ensure_font
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from processors.lag import LagReport
from producers.pseudonym import Pseudonymiser
from producers.simulate.generator import SimConfig, generate
from projections import open_store
from projections.api.app import create_app
from projections.api.auth import TokenStore
from projections.audit_archive import archive
from projections.audit_tables import audit_log
from projections.webhooks.queue import DeliveryQueue, Outcome
from schemas.idnumber import checksum_char

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHARED_REPORT = REPO.parent / "shared" / "domain" / "h1-report.csv"
PACKAGED_REPORT = REPO / "producers" / "simulate" / "h1-report.csv"
ARTIFACTS = REPO / "test-artifacts"
DOCS = REPO / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BATCH = 5000
NEW_VISIT_ID = "browser-test-visit-abuse-1"
CASEWORKER_TOWN = "溪口镇"
DESK = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SHANGHAI = ZoneInfo("Asia/Shanghai")
# the person the desk caseworker finds by ID number (registered and visited by the test)
LOOKUP_STEM = "33028319850412002"
LOOKUP_ID = LOOKUP_STEM + checksum_char(LOOKUP_STEM)
LOOKUP_NAME, LOOKUP_PHONE = "王秀英", "13812345678"


def report_rows() -> list[dict[str, str]]:
    path = SHARED_REPORT if SHARED_REPORT.exists() else PACKAGED_REPORT
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def grouped(value: str) -> str:
    return f"{int(value):,}"


def today() -> date:
    return datetime.now(SHANGHAI).date()


class StoreLag:
    """Lag probe stand-in: the store is fed directly, so everything applied is 'caught up'."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def close(self) -> None:

        pass


    def measure(self) -> LagReport:
        ends = {p: off + 1 for p, off in self.store.offsets().items()}
        return LagReport(per_projection={"sql": 0}, per_partition={"sql": {p: 0 for p in ends}}, end_offsets=ends)


class StoreLog:
    """Stands in for Kafka and the processor: events the test or the API publish (the API's
    ``alert.handled`` and ``warning.snoozed``, acknowledged by the 'broker' at once) are applied to
    the store at the next offset, as the processor would apply them."""

    def __init__(self, store: Any, next_offset: int) -> None:
        self.store = store
        self.offset = next_offset
        self.published: list[dict[str, Any]] = []
        self.appended: list[dict[str, Any]] = []  # everything applied after the simulation, in order
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
    token: str  # admin
    caseworker: str  # of CASEWORKER_TOWN
    viewer: str
    store: Any
    events: list[dict[str, Any]]
    log: StoreLog
    settings: Settings
    home: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """An app over ``store`` under uvicorn in a thread, on a free port."""

    def __init__(self, settings: Settings, store: Any, log: StoreLog) -> None:
        import uvicorn

        self.app = create_app(settings, store=store, lag_probe=StoreLag(store), publisher=log)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="dashboard-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def token(self, name: str, role: str, towns: list[str] | None = None) -> str:
        return self.app.state.tokens.create(name, role, towns)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def build_store(url: str, events: list[dict[str, Any]]) -> Any:
    store = open_store(url, default_rules(), topic=Settings.from_env().topics.events)
    store.migrate()
    for start in range(0, len(events), BATCH):
        store.apply_batch([Consumed(0, start + i, e) for i, e in enumerate(events[start:start + BATCH])])
    return store


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make servers` installs Debian's chromium")
    home = Path(tempfile.mkdtemp(prefix="careledger-dashboard-"))
    settings = dataclasses.replace(Settings.from_env(), home=home / "home", sql_url=f"sqlite:///{home / 'h1.sqlite3'}",
                                   kafka_bootstrap="127.0.0.1:1")
    if ensure_font(install=False) is None:
        pytest.fail("no CJK source font for the dashboard's font: `make font` installs fonts-wqy-microhei")
    events = list(generate(SimConfig(calibrate="2024H1", seed=2024, tail_months=6)))
    store = build_store(settings.sql_url, events)
    # the processor's sweep with CARELEDGER_ESCALATE_AFTER_H=0: every critical alert not acknowledged is overdue
    assert store.escalate(after=timedelta(0)).escalated > 0
    log = StoreLog(store, next_offset=len(events))
    api = Api(settings, store, log)
    try:
        yield Served(url=api.url, token=api.token("browser-test", "admin"),
                     caseworker=api.token("溪口镇社工 张敏", "caseworker", [CASEWORKER_TOWN]),
                     viewer=api.token("区残联 查看", "viewer"), store=store, events=events, log=log,
                     settings=settings, home=home)
    finally:
        api.stop()
        store.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def pw() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(pw: Any) -> Iterator[Any]:
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield chromium
    finally:
        chromium.close()


class Tab:
    """One browser context (a user's browser: its own storage) and its page; JavaScript errors are
    collected and fail the test at ``close``."""

    def __init__(self, browser: Any, url: str, token: str | None, viewport: dict[str, int], route: str = "") -> None:
        phone = viewport["width"] < 600
        self.context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai",
                                           is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1)
        if token:  # the token the user pasted once (kept in localStorage)
            self.context.add_init_script(f"localStorage.setItem('careledger.token', {json.dumps(token)})")
        self.errors: list[str] = []
        self.responses: list[tuple[str, int]] = []  # (url, status) of everything the page asked
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("response", lambda r: self.responses.append((r.url, r.status)))
        self.page.set_default_timeout(30_000)
        self.page.goto(url + route)

    def go(self, route: str) -> None:
        self.page.evaluate("r => { location.hash = r; }", route)

    def close(self) -> None:
        try:
            assert not self.errors, f"JavaScript errors on the page: {self.errors}"
        finally:
            self.context.close()


@pytest.fixture
def page(served: Served, browser: Any) -> Iterator[Any]:
    tab = Tab(browser, served.url, served.token, DESK)
    yield tab.page
    tab.close()


def cell(row: Any, col: str) -> Any:
    return row.locator(f'td[data-col="{col}"]')


OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth, wider = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > width + 0.5 || r.left < -0.5))
      wider.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  return { width, scrollWidth: document.documentElement.scrollWidth, wider };
}"""


def assert_fits(page: Any, width: int, where: str) -> None:
    fit = page.evaluate(OVERFLOW_JS)
    assert fit["width"] == width and fit["scrollWidth"] == width, (where, fit)
    assert fit["wider"] == [], (where, fit["wider"][:10])


SETTLED_JS = "async () => { await document.fonts.ready; await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); }"


def screenshot(page: Any, name: str, *, full_page: bool = False, docs: str | None = None) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_function("!document.querySelector('#toast').classList.contains('show')")  # no toast
    page.wait_for_timeout(300)  # and faded out
    page.evaluate(SETTLED_JS)  # every glyph drawn with the loaded font, not a box of the fallback
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    if docs and os.environ.get("CARELEDGER_UPDATE_DOCS_IMG") == "1":  # the pictures of the docs
        (DOCS / docs).parent.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / docs)
    return path


def pushed_to_a_subscriber(served: Served, person_id: str) -> None:
    """Two webhook deliveries about the person through the delivery queue, as the deliverer does:
    one POST answered 200, one whose deliverer stopped after the claim (its audit row, written
    ahead, keeps status 0)."""
    queue = DeliveryQueue(served.store.engine)
    body = json.dumps({"alert_id": "A-browser", "person_id": person_id})
    queue.enqueue([{"delivery_id": f"browser-{person_id}-{i}", "subscription_id": "wh_browser", "alert_id": "A-browser",
                    "outbox_seq": i, "body": body} for i in (1, 2)])
    claimed = queue.claim("wh_browser", limit=2, lease_s=60)
    assert len(claimed) == 2
    queue.record([Outcome(claimed[0]["delivery_id"], 200, audit_id=claimed[0]["audit_id"], posted=True)])


ARCHIVED_BEFORE = "2020-01-01"


def archived_earlier(served: Served, person_id: str, out: Path) -> None:
    """A read of the person from 2019, archived by ``careledger audit archive``'s own code (the
    other tests' rows, all of today, stay)."""
    tokens = TokenStore.from_settings(served.settings)  # the served API's database
    old = tokens.audit(principal=None, method="GET", path=f"/api/persons/{person_id}/record", query=None,
                       person_id=person_id, status=200)
    with tokens.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == old).values(at="2019-06-01T08:00:00.000+00:00"))
    assert archive(tokens.engine, ARCHIVED_BEFORE, out).rows == 1
    tokens.close()


def assert_archived_note(page: Any) -> None:
    """The person page's 查阅记录 says that older reads are archived (not shown)."""
    page.wait_for_selector("#person-reads .card-sub.archived")
    assert page.inner_text("#person-reads .card-sub.archived") == (
        f"{ARCHIVED_BEFORE} 之前的查阅记录已归档，不在此列；管理员可用 careledger audit search 查询")
    assert "2019-06-01" not in page.inner_text("#person-reads")


def assert_pushes_shown(page: Any) -> None:
    """The person page's 查阅记录 names both pushes; the unrecorded answer says so."""
    page.wait_for_selector('#person-reads .reads li[data-role="subscriber"][data-status="0"]')
    pushes = page.eval_on_selector_all('#person-reads .reads li[data-role="subscriber"]',
                                       "items => items.map(i => [i.dataset.status, i.innerText])")
    assert sorted(status for status, _ in pushes) == ["0", "200"], pushes
    for status, text in pushes:
        assert "推送给订阅方（webhook）" in text and "webhook:wh_browser" in text, text
        assert ("未记录应答" in text) == (status == "0"), text


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
    page.wait_for_selector("#alert-summary .sum-row[data-rule]")
    assert page.locator("#live").get_attribute("data-state") == "ok"
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "dashboard.png", full_page=True, docs="dashboard.png")

    # ---- the work queue: a new alert arrives while the page is open, shown without a reload
    page.click('[data-nav="alerts"]')
    page.wait_for_selector("#alert-matrix tbody tr[data-town]")
    page.select_option("#alert-sort", "newest")
    page.wait_for_function("location.hash.includes('sort=newest')")
    page.wait_for_selector("#alerts-list .qitem[data-alert-id]")
    page.evaluate("window.__noReload = true")
    person = next(e for e in served.events if e["type"] == "person.registered")
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    visit = {"event_id": NEW_VISIT_ID, "type": "visit.completed", "version": 1, "occurred_at": now.isoformat(),
             "person_id": person["person_id"], "town": person["town"], "village": person.get("village"),
             "source": "browser-test", "payload": {"visit_kind": "home_visit", "visitor": "w-test",
                                                   "hazards": ["abuse_or_neglect"]}}
    served.log.append([visit])
    row = page.locator(f'#alerts-list .qitem[data-event-ids~="{NEW_VISIT_ID}"]')
    row.wait_for(timeout=20_000)
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"
    assert row.get_attribute("data-severity") == "critical"
    assert row.get_attribute("data-rule") == "visit_hazard"
    assert row.get_attribute("data-state") == "open"
    assert "待处理" in row.inner_text()
    assert row.locator(".person-name").inner_text() == person["payload"]["name"]  # who, not a pseudonym
    assert "虐待或疏于照料" in row.locator(".reason").inner_text()

    # ---- acknowledge it: the status changes (page and store)
    row.locator('button[data-action="acknowledge"]').click()
    page.wait_for_function(
        f"""document.querySelector('#alerts-list .qitem[data-event-ids~="{NEW_VISIT_ID}"]')
            ?.dataset.state === 'acknowledged'""")
    assert "已确认" in row.inner_text() and "browser-test" in row.inner_text()
    assert row.locator('button[data-action="acknowledge"]').is_disabled()
    stored = served.store.alerts(person_id=person["person_id"], rule="visit_hazard")["items"]
    acked = [a for a in stored if NEW_VISIT_ID in a["event_ids"]]
    assert len(acked) == 1 and acked[0]["acknowledged_by"] == "browser-test" and acked[0]["status"] == "open"
    handled = [e for e in served.log.published if e["type"] == "alert.handled"  # on the log first
               and e["payload"]["alert_id"] == acked[0]["alert_id"]]
    assert [(e["payload"]["action"], e["payload"]["by"]) for e in handled] == [("acknowledge", "browser-test")]

    # ---- English is one click away (and back)
    page.click("#lang-toggle")
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert row.inner_text().count("Acknowledged") == 1
    assert "a visit found: abuse or neglect" in row.locator(".reason").inner_text()
    page.click('[data-nav="overview"]')
    page.wait_for_selector("#report-table tbody tr[data-metric]")
    assert page.locator("#report-table thead th", has_text="Person-times").count() == 1
    assert cell(page.locator('#report-table tr[data-metric="home_visit"]'), "events").inner_text() == "3,548"
    page.screenshot(path=str(ARTIFACTS / "dashboard-en.png"), full_page=False)
    page.click("#lang-toggle")
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")


# ---------------------------------------------------------------------------------------------------
def item(kind: str, key: str, value: str) -> str:
    return f'.{kind}[data-{key}="{value}"]'


def wait_dialog_closed(page: Any) -> None:
    page.wait_for_function("!document.querySelector('#action-dialog').open")


def assign(page: Any, where: str, who: str, note: str) -> None:
    page.click(f"{where} [data-action=assign]")
    page.wait_for_selector("#action-dialog[open]")
    page.fill("#action-assignee", who)
    page.fill("#action-note", note)
    page.click("#action-submit")
    wait_dialog_closed(page)


def acknowledge(page: Any, where: str) -> None:
    page.click(f"{where} [data-action=acknowledge]")


def resolve(page: Any, where: str, note: str) -> None:
    page.click(f"{where} [data-action=resolve]")
    page.wait_for_selector("#action-dialog[open]")
    page.click("#action-submit")  # without the note it asks for it, and sends nothing
    assert "请填写" in page.inner_text("#action-error")
    assert page.evaluate("document.querySelector('#action-dialog').open")
    page.fill("#action-note", note)
    page.click("#action-submit")
    wait_dialog_closed(page)


def history(page: Any, alert_id: str) -> list[list[str]]:
    """The handled alert's history on the person page: [action, text, note] per line."""
    return page.eval_on_selector_all(
        f'#person-handled .handled[data-alert-id="{alert_id}"] .history li',
        "lis => lis.map(li => [li.dataset.action, li.querySelector('.h-what').textContent,"
        " li.querySelector('.h-note')?.textContent || ''])")


def summary_cells(page: Any, table: str, town: str) -> Any:
    """Wait for a queue's summary ``table``; it must show ``town``'s row only.  Returns the
    rule → summary button lookup of that row."""
    page.wait_for_selector(f"{table} tbody tr[data-town]")
    assert page.eval_on_selector_all(f"{table} tbody tr[data-town]", "rs => rs.map(r => r.dataset.town)") == [town]
    return lambda rule: page.locator(f'{table} tbody .mcell[data-rule="{rule}"][data-town="{town}"]')


def wait_resolved_on_person_page(page: Any, alert_id: str) -> None:
    page.wait_for_selector(f'#person-handled .handled[data-alert-id="{alert_id}"][data-state="resolved"]')
    assert page.locator(f'#person-open .qitem[data-alert-id="{alert_id}"]').count() == 0


def test_caseworker_queue_person_page_actions_survive_a_replay(served: Served, browser: Any, tmp_path: Path) -> None:
    town, store, cw_name = CASEWORKER_TOWN, served.store, "溪口镇社工 张敏"
    # a person of the town the desk caseworker will find by ID number: registered, then a visit found a hazard
    lookup_pid = Pseudonymiser.from_settings(served.settings).person_id(LOOKUP_ID)
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    envelope = {"version": 1, "person_id": lookup_pid, "town": town, "village": "溪口社区", "source": "browser-test"}
    served.log.append([
        {**envelope, "event_id": "browser-test-reg-lookup", "type": "person.registered",
         "occurred_at": (now - timedelta(hours=2)).isoformat(),
         "payload": {"category": "physical", "grade": 1, "birth_date": "1985-04-12", "hardship": True,
                     "certificate_expires": (today() + timedelta(days=1500)).isoformat(), "name": LOOKUP_NAME,
                     "phone": LOOKUP_PHONE}},
        {**envelope, "event_id": "browser-test-visit-lookup", "type": "visit.completed", "occurred_at": now.isoformat(),
         "payload": {"visit_kind": "home_visit", "visitor": "溪口镇残联 周波", "hazards": ["medical_emergency"]}},
    ])
    everyone = store.alerts(status="open", limit=10000, sort="queue", identity=True)["items"]
    mine = [a for a in everyone if a["person_town"] == town]
    assert len(mine) > 15 and all(a.get("name") for a in mine)
    mine_names = {a["name"] for a in mine}
    # the names an admin's queue shows first, of persons of other towns: never on this caseworker's page
    others = [a["name"] for a in everyone[:60] if a["person_town"] != town and a["name"] not in mine_names]
    assert len(others) >= 10, others
    summary = store.alerts_summary(towns=[town], status="open")
    handled: list[tuple[str, str, list[str], str]] = []  # (person_id, alert_id, actions, resolve note)

    # ---- at a desk: the town's queue, its summary first, names of the town only
    desk = Tab(browser, served.url, served.caseworker, DESK, "#/alerts")
    try:
        page = desk.page
        cell_of = summary_cells(page, "#alert-matrix", town)
        for r in summary:
            button = cell_of(r["rule"])
            assert button.locator(".mc-count").inner_text() == f"{r['count']:,}", r
            if r["critical"]:
                assert f"紧急 {r['critical']}" in button.inner_text(), r
            if r["escalated"]:
                assert f"超时 {r['escalated']}" in button.inner_text(), r
        assert f"共 {sum(r['count'] for r in summary)} 条" in page.inner_text("#alert-matrix-sub")
        page.wait_for_selector("#alerts-list .qitem[data-alert-id]")
        shown = page.eval_on_selector_all(
            "#alerts-list .qitem[data-alert-id]",
            "items => items.map(i => [i.dataset.alertId, i.querySelector('.person-name').textContent,"
            " i.querySelector('.q-town').textContent])")
        assert [s[0] for s in shown] == [a["alert_id"] for a in mine[:15]]  # the queue's order, the town only
        assert [s[1] for s in shown] == [a["name"] for a in mine[:15]]
        assert all(s[2].startswith(town) for s in shown)
        text = page.inner_text("main")
        assert [n for n in others if n in text] == []
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "dashboard-inbox.png", docs="img/inbox-desk.png")
        # a cell of the summary: that rule in that town
        page.click(f'#alert-matrix .mcell[data-rule="visit_hazard"][data-town="{town}"]')
        page.wait_for_function("() => { const r = [...document.querySelectorAll('#alerts-list .qitem[data-alert-id]')];"
                               " return location.hash.includes('rule=visit_hazard') && r.length > 0"
                               " && r.every(i => i.dataset.rule === 'visit_hazard'); }")
        hazards = next(r["count"] for r in summary if r["rule"] == "visit_hazard")
        page.wait_for_function(f"document.querySelector('#alerts-total').textContent.includes('{hazards:,}')")
        # the overdue ones only: critical, not acknowledged in time, marked so
        overdue = next(r["escalated"] for r in summary if r["rule"] == "visit_hazard")
        assert overdue > 0
        page.check("#alert-escalated")
        page.wait_for_function("location.hash.includes('escalated=true')")
        page.wait_for_function(f"document.querySelector('#alerts-total').textContent === '共 {overdue:,} 条'")
        marks = page.eval_on_selector_all("#alerts-list .qitem[data-alert-id]",
                                          "items => items.map(i => i.classList.contains('escalated') && i.querySelector('.esc')?.textContent)")
        assert marks and set(marks) == {"已超时"}

        # ---- finding a person by ID number: the number goes in a POST body, nowhere else
        page.fill("#lookup-input", LOOKUP_ID)
        page.press("#lookup-input", "Enter")
        page.wait_for_function(f"location.hash === '#/person/{lookup_pid}'")
        page.wait_for_selector("#person-profile .profile-name")
        assert page.input_value("#lookup-input") == ""
        kept = page.evaluate("() => JSON.stringify([location.href, document.title, Object.entries(localStorage),"
                             " Object.entries(sessionStorage)])")
        assert LOOKUP_ID not in kept and LOOKUP_STEM not in kept
        profile = page.inner_text("#person-profile")
        assert page.inner_text("#person-profile .profile-name") == LOOKUP_NAME
        for shown_there in (LOOKUP_PHONE, town, "肢体残疾", "1级", "在册"):
            assert shown_there in profile, shown_there
        assert page.locator("#person-timeline li[data-type]").count() == 2
        assert page.inner_text('#person-timeline li[data-type="visit.completed"]').count("医疗急症") == 1
        open_item = "#person-open .qitem[data-alert-id]"
        assert page.locator(open_item).count() == 1
        alert_id = page.get_attribute(open_item, "data-alert-id")
        where = f'#person-open .qitem[data-alert-id="{alert_id}"]'
        assert "联系并处置后" in page.inner_text(where)  # what clears it

        # ---- assign with a note, acknowledge, resolve with a note
        assign(page, where, "李娜", "请本周内上门核实")
        page.wait_for_function(f"document.querySelector('{where} .by.assigned')?.textContent.includes('李娜')")
        acknowledge(page, where)
        page.wait_for_selector(f'{where}[data-state="acknowledged"]')
        resolve(page, where, "已上门核实，联系家属陪同就医")
        wait_resolved_on_person_page(page, alert_id)
        assert history(page, alert_id) == [
            ["detected", "发现", ""], ["assign", f"指派给 李娜 · {cw_name}", "请本周内上门核实"],
            ["acknowledge", f"确认 · {cw_name}", ""], ["resolve", f"处理完成 · {cw_name}", "已上门核实，联系家属陪同就医"]]
        sent = [(e["payload"]["action"], e["payload"].get("assignee"), e["payload"].get("note"), e["payload"]["by"])
                for e in served.log.published if e["type"] == "alert.handled" and e["payload"]["alert_id"] == alert_id]
        assert sent == [("assign", "李娜", "请本周内上门核实", cw_name), ("acknowledge", None, None, cw_name),
                        ("resolve", None, "已上门核实，联系家属陪同就医", cw_name)]
        handled.append((lookup_pid, alert_id, ["assign", "acknowledge", "resolve"], "已上门核实，联系家属陪同就医"))
    finally:
        desk.close()

    # ---- on a phone: from the queue to a person's page by the name, acknowledge, resolve with a note
    phone = Tab(browser, served.url, served.caseworker, PHONE, "#/alerts")
    try:
        page = phone.page
        page.wait_for_selector("#alerts-list .qitem[data-alert-id]")
        assert_fits(page, PHONE["width"], "the alerts queue")
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "dashboard-inbox-phone.png")
        pick = next(a for a in mine if a["person_id"] != lookup_pid)
        page.click(f'#alerts-list .qitem[data-alert-id="{pick["alert_id"]}"] a.person-name')
        page.wait_for_function(f"location.hash === '#/person/{pick['person_id']}'")
        page.wait_for_selector("#person-profile .profile-name")
        assert page.inner_text("#person-profile .profile-name") == pick["name"]
        where = f'#person-open .qitem[data-alert-id="{pick["alert_id"]}"]'
        page.wait_for_selector(where)
        assert_fits(page, PHONE["width"], "the person page")
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "dashboard-person-phone.png", docs="img/person-phone.png")
        acknowledge(page, where)
        page.wait_for_selector(f'{where}[data-state="acknowledged"]')
        page.click(f"{where} [data-action=resolve]")
        page.wait_for_selector("#action-dialog[open]")
        assert_fits(page, PHONE["width"], "the action dialog")
        page.fill("#action-note", "已电话联系家属，已送医")
        page.click("#action-submit")
        wait_dialog_closed(page)
        wait_resolved_on_person_page(page, pick["alert_id"])
        assert [h[0] for h in history(page, pick["alert_id"])] == ["detected", "acknowledge", "resolve"]
        assert_fits(page, PHONE["width"], "the person page, handled")
        screenshot(page, "dashboard-person-phone-handled.png", full_page=True)
        handled.append((pick["person_id"], pick["alert_id"], ["acknowledge", "resolve"], "已电话联系家属，已送医"))
    finally:
        phone.close()

    # ---- a replay: a fresh store from the same events and the API's alert.handled events, in order
    with served.log.lock:
        log = served.events + served.log.appended
    replayed = build_store(f"sqlite:///{tmp_path / 'replay.sqlite3'}", log)
    replay_api = Api(dataclasses.replace(served.settings, sql_url=f"sqlite:///{tmp_path / 'replay.sqlite3'}"),
                     replayed, StoreLog(replayed, next_offset=len(log)))
    try:
        for person_id, alert_id, actions, note in handled:
            record = replayed.person_record(person_id, today(), identity=True)
            alert = next(a for a in record["handled_alerts"] if a["alert_id"] == alert_id)
            assert alert["status"] == "resolved" and alert["resolved_by"] == cw_name
            assert [x["action"] for x in alert["actions"]] == actions
            assert alert["actions"][-1]["note"] == note
            assert alert_id not in {a["alert_id"] for a in record["open_alerts"]}
        # and its own dashboard says so, on the person page
        tab = Tab(browser, replay_api.url, replay_api.token("溪口镇社工 复核", "caseworker", [town]), DESK,
                  f"#/person/{handled[0][0]}")
        try:
            page = tab.page
            wait_resolved_on_person_page(page, handled[0][1])
            assert history(page, handled[0][1])[-1] == ["resolve", f"处理完成 · {cw_name}", handled[0][3]]
            tab.go(f"#/person/{handled[1][0]}")
            wait_resolved_on_person_page(page, handled[1][1])
            assert history(page, handled[1][1])[-1][2] == handled[1][3]
            screenshot(page, "dashboard-replayed-person.png", full_page=True)
        finally:
            tab.close()
    finally:
        replay_api.stop()
        replayed.close()


def test_warnings_queue_summary_list_and_snooze(served: Served, browser: Any) -> None:
    town, store, as_of = CASEWORKER_TOWN, served.store, today()
    summary = store.warnings_summary(as_of, towns=[town])
    assert summary and {r["town"] for r in summary} == {town}
    tab = Tab(browser, served.url, served.caseworker, PHONE, "#/warnings")
    try:
        page = tab.page
        cell_of = summary_cells(page, "#warning-matrix", town)
        for r in summary:
            assert cell_of(r["rule"]).locator(".mc-count").inner_text() == f"{r['due']:,}", r
        total = sum(r["due"] for r in summary)
        assert f"截至 {as_of}" in page.inner_text("#warning-matrix-sub")
        assert f"共 {total:,} 条" in page.inner_text("#warning-matrix-sub")
        assert page.inner_text("#nav-warnings-count") == f"{total:,}"
        assert_fits(page, PHONE["width"], "the warnings summary")

        # a cell: the warnings of that rule in that town, longest overdue first, with names and reasons
        page.click(f'#warning-matrix .mcell[data-rule="visit_overdue"][data-town="{town}"]')
        page.wait_for_function("() => { const r = [...document.querySelectorAll('#warnings-list .qitem[data-warning-id]')];"
                               " return location.hash.includes('rule=visit_overdue') && r.length > 0"
                               " && r.every(i => i.dataset.rule === 'visit_overdue'); }")
        expected = store.warnings(as_of, rule="visit_overdue", towns=[town], limit=15, identity=True)["items"]
        shown = page.eval_on_selector_all(
            "#warnings-list .qitem[data-warning-id]",
            "items => items.map(i => [i.dataset.warningId, i.querySelector('.person-name').textContent,"
            " i.querySelector('.q-when').textContent, i.querySelector('.reason').textContent])")
        assert [s[0] for s in shown] == [w["warning_id"] for w in expected]
        assert [s[1] for s in shown] == [w["name"] for w in expected]
        assert [w["since"] for w in expected] == sorted(w["since"] for w in expected)
        assert all(s[2].startswith(f"自 {w['since']} 起") for s, w in zip(shown, expected, strict=True))
        assert all("未访视" in s[3] for s in shown)
        assert_fits(page, PHONE["width"], "the warnings list")
        page.locator("#warnings-card").scroll_into_view_if_needed()
        screenshot(page, "dashboard-warnings-phone.png")

        # ---- snooze the oldest: a date and a reason; it leaves the list, and is shown when asked for
        first = expected[0]
        where = f'#warnings-list .qitem[data-warning-id="{first["warning_id"]}"]'
        page.click(f"{where} [data-action=snooze]")
        page.wait_for_selector("#action-dialog[open]")
        until = (as_of + timedelta(days=14)).isoformat()
        assert page.input_value("#action-until") == until
        assert_fits(page, PHONE["width"], "the snooze dialog")
        page.fill("#action-reason", "本人住院，出院后再联系")
        page.click("#action-submit")
        wait_dialog_closed(page)
        page.wait_for_selector(where, state="detached")
        sent = [e["payload"] for e in served.log.published if e["type"] == "warning.snoozed"]
        assert sent[-1] == {"warning_id": first["warning_id"], "until": until, "reason": "本人住院，出院后再联系",
                            "by": "溪口镇社工 张敏"}
        page.check("#warning-snoozed")
        page.wait_for_selector(f'{where}[data-snoozed="{until}"]')
        assert f"已暂缓至 {until}" in page.inner_text(where) and "本人住院" in page.inner_text(where)
        assert next(r for r in store.warnings_summary(as_of, towns=[town]) if r["rule"] == "visit_overdue")["snoozed"] == 1
    finally:
        tab.close()


PERSON_LEVEL_PATHS = ("/api/alerts", "/api/warnings", "/api/persons")


def test_a_viewer_sees_the_figures_and_no_names(served: Served, browser: Any) -> None:
    names = {a["name"] for a in served.store.alerts(status="open", limit=300, identity=True)["items"]}
    names |= {w["name"] for w in served.store.warnings(today(), limit=300, identity=True)["items"]}
    assert len(names) > 100
    someone = served.store.alerts(status="open", limit=1)["items"][0]["person_id"]
    for viewport in (DESK, PHONE):
        tab = Tab(browser, served.url, served.viewer, viewport)
        try:
            page = tab.page
            choose_period(page, "2024H1", "2024-06-30")
            assert cell(page.locator('#report-table tr[data-metric="home_visit"]'), "events").inner_text() == "3,548"
            page.wait_for_function("window.careledger.state().tokenState === 'forbidden'")
            assert page.inner_text('#kpis [data-kpi="alerts"] .kpi-value span') == "—"
            assert "只能查看统计数据" in page.inner_text("#alert-summary")
            assert "查看者" in page.inner_text("#token-note")
            if viewport is PHONE:
                assert_fits(page, PHONE["width"], "the viewer's overview")
            for route, view in (("#/alerts", "alerts"), ("#/warnings", "warnings"), (f"#/person/{someone}", "person")):
                tab.go(route)
                page.wait_for_selector(f'#view-{view}:not([hidden]) .locked.lock')
                assert "只能查看统计数据" in page.inner_text(f"#view-{view}"), route
                if viewport is PHONE:
                    assert_fits(page, PHONE["width"], route)
            assert page.locator(".person-name, .profile-name").count() == 0
            text = page.evaluate("document.body.innerText")
            assert [n for n in names if n in text] == []
            person_level = [(u, s) for u, s in tab.responses if any(p in u for p in PERSON_LEVEL_PATHS)]
            assert person_level and all(s == 403 for _, s in person_level), person_level
            if viewport is DESK:
                screenshot(page, "dashboard-viewer.png")
        finally:
            tab.close()


# ---------------------------------------------------------------------------------------------------
ACTIVITY_TYPES = {"payment.disbursed", "service.delivered", "visit.completed", "job.placed", "need.registered",
                  "job.posted"}
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


def test_phone_without_cjk_fonts_fits_the_screen_and_draws_chinese(served: Served, pw: Any, tmp_path: Path) -> None:
    cache = tmp_path / "fontconfig-cache"
    cache.mkdir()
    conf = tmp_path / "fonts.conf"
    conf.write_text(NO_CJK_FONTS.format(cache=cache), encoding="utf-8")
    env = {"FONTCONFIG_FILE": str(conf), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    phone = {"is_mobile": True, "has_touch": True, "device_scale_factor": 2, "env": env}
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
        page.wait_for_selector("#alert-summary .sum-row[data-rule]")
        assert page.locator("#kpis .kpi-delta").count() == 0  # ▲ marks growth, not another period
        glyphs = page.evaluate(GLYPHS_JS)
        assert glyphs["distinct"] == 5 and glyphs["faces"] == ["loaded"], glyphs

        assert_fits(page, PHONE["width"], "the overview")
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
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "dashboard-phone.png", docs="dashboard-phone.png")
        screenshot(page, "dashboard-phone-full.png", full_page=True)
        # the work queues too: every town a card, every alert a card, all drawn in the served font
        page.evaluate("location.hash = '#/alerts'")
        page.wait_for_selector("#alerts-list .qitem[data-alert-id] .person-name")
        assert_fits(page, PHONE["width"], "the alerts queue")
        page.evaluate("location.hash = '#/warnings'")
        page.wait_for_selector("#warnings-list .qitem[data-warning-id] .person-name")
        assert_fits(page, PHONE["width"], "the warnings queue")
        # an admin's person page on a phone, with who has read the person
        page.click("#warnings-list .qitem[data-warning-id] a.person-name")
        page.wait_for_selector('#person-reads .reads li[data-path="/api/warnings"]')
        person_id = page.evaluate("location.hash").rsplit("/", 1)[-1]
        pushed_to_a_subscriber(served, person_id)
        archived_earlier(served, person_id, tmp_path / "audit-2019-phone.jsonl.gz")
        page.reload()
        assert_pushes_shown(page)
        assert_archived_note(page)
        assert_fits(page, PHONE["width"], "the person page and who read it")
        page.locator("#person-reads").scroll_into_view_if_needed()
        screenshot(page, "dashboard-person-reads-phone.png")
        assert not errors, errors
    finally:
        context.close()


def test_desk_layout_fits_1440_on_every_view(served: Served, page: Any, tmp_path: Path) -> None:
    page.wait_for_selector("#report-table tbody tr[data-metric]")
    choose_period(page, "2024H1", "2024-06-30")
    assert_fits(page, DESK["width"], "the overview")
    assert page.locator("#report-table thead").is_visible()
    page.click('[data-nav="alerts"]')
    page.wait_for_selector("#alerts-list .qitem[data-alert-id]")
    assert_fits(page, DESK["width"], "the alerts queue")
    assert page.locator("#alerts-list .qhead").is_visible()  # a table on a desk: its column titles
    # an admin's cell of one town: the list is that town's, in the queue's order (the API's list
    # with town=)
    as_of = today()
    rows = served.store.warnings_summary(as_of)
    town = max((r for r in rows if r["rule"] == "need_unmet"), key=lambda r: r["due"])["town"]
    page.click('[data-nav="warnings"]')
    page.wait_for_selector("#warning-matrix tbody tr[data-town]")
    page.click(f'#warning-matrix .mcell[data-rule="need_unmet"][data-town="{town}"]')
    expected = served.store.warnings(as_of, rule="need_unmet", towns=[town], limit=15)["items"]
    page.wait_for_function(f"""() => {{ const r = [...document.querySelectorAll('#warnings-list .qitem[data-warning-id]')];
        return r.length === {len(expected)} && r.every(i => i.dataset.rule === 'need_unmet'); }}""")
    shown = page.eval_on_selector_all("#warnings-list .qitem[data-warning-id]", "items => items.map(i => i.dataset.warningId)")
    assert shown == [w["warning_id"] for w in expected]
    due = next(r["due"] for r in rows if r["rule"] == "need_unmet" and r["town"] == town)
    assert page.inner_text("#warnings-total") == f"共 {due:,} 条"
    assert_fits(page, DESK["width"], "the warnings queue")
    first = page.get_attribute("#warnings-list .qitem[data-warning-id] a.person-name", "href")
    page.click("#warnings-list .qitem[data-warning-id] a.person-name")
    page.wait_for_function(f"location.hash === {json.dumps(first)}")
    page.wait_for_selector("#person-profile .profile-name")
    page.wait_for_selector("#person-warnings .qitem[data-rule='need_unmet']")
    # an admin sees who has read the person: this page, and the list of warnings that showed them
    person_id = first.rsplit("/", 1)[-1]
    page.wait_for_selector(f'#person-reads .reads li[data-path="/api/persons/{person_id}/record"]')
    reads = page.eval_on_selector_all("#person-reads .reads li", "items => items.map(i => [i.dataset.path, i.innerText])")
    listed = [text for path, text in reads if path == "/api/warnings"]
    assert listed and "需求预警列表中出现" in listed[0] and "browser-test" in listed[0], reads
    pushed_to_a_subscriber(served, person_id)
    archived_earlier(served, person_id, tmp_path / "audit-2019-desk.jsonl.gz")
    page.reload()
    assert_pushes_shown(page)
    assert_archived_note(page)
    assert_fits(page, DESK["width"], "the person page")
    screenshot(page, "dashboard-person-desk.png", full_page=True)


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
def test_api_docs_render_offline(served: Served, browser: Any, path: str, ready: str) -> None:
    from urllib.parse import urlparse

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    problems: list[str] = []

    def offline(route: Any) -> None:  # the machine (and a federation's intranet) has no internet
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    try:
        context.route("**/*", offline)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda msg: problems.append(msg.text[:300]) if msg.type == "error" else None)
        page.goto(served.url + path)
        # the bundles parse the whole description first: a minute for the first operation on a busy
        # machine, then all of them; a broken description (ReDoc stops at a dangling $ref) says why
        try:
            page.wait_for_function(f"({ready})() >= 1", timeout=60_000)
            page.wait_for_function(f"({ready})() >= 15", timeout=30_000)
        except Exception as exc:
            raise AssertionError(f"{path} drew no operations; page errors: {problems[:5]}") from exc
        assert page.get_by_text("/api/warnings").count() + page.get_by_text("Need warnings").count() > 0
        assert blocked == [], blocked
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"api-{path}-offline.png"))
    finally:
        context.close()
