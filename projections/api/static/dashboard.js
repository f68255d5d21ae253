/* careledger dashboard: the page's loop, its views and wiring; the sections are under js/views/.
 *
 * One page, four views named by the address: #/ (数据概览: report, trends, targets, status - public
 * figures), #/alerts and #/warnings (the work queues, ?rule=&town=... from their summaries) and
 * #/person/<person_id> (the person page).  Person-level views need a caseworker or admin token,
 * which the user pastes once (kept in localStorage); a viewer's token sees the figures only.
 * Live: /api/status is polled every 2 s; the overview's figures are re-read when the stream moved
 * (or at least every 15 s), the alerts every 3 s -- or pushed by /api/alerts/stream (SSE, read with
 * fetch: EventSource cannot send the Authorization header), polling then continues slowly as a
 * fallback; warning frames re-read the warnings, frames about the open person re-read the page.
 */
import {
  $, LS_LANG, LS_TOKEN, S, api, app, authFailure, errorText, sleep, t, tokenMessage,
} from "./js/core.js";
import { loadPeriods, period, renderPeriodOptions, trendMonths } from "./js/periods.js";
import { loadAlerts, renderAlertList, renderAlertMatrix, renderSummary } from "./js/views/alerts.js";
import { renderKpis } from "./js/views/kpis.js";
import { loadPerson, renderPerson, wireLookup } from "./js/views/person.js";
import { renderReport, reportCsv } from "./js/views/report.js";
import { loadStatus, renderSseState, renderStatus } from "./js/views/status.js";
import { loadTargets, renderTargets } from "./js/views/targets.js";
import { renderTowns } from "./js/views/towns.js";
import { renderTabs, renderTrend } from "./js/views/trend.js";
import { loadWarnings, renderWarnings } from "./js/views/warnings.js";

const POLL_MS = 2000, AGG_IDLE_MS = 15000, ALERT_POLL_MS = 3000, ALERT_POLL_SSE_MS = 15000;
const WARN_REFRESH_MS = 60000, PERIODS_MOVING_MS = 10000, PERIODS_IDLE_MS = 120000;
const VIEWS = ["overview", "alerts", "warnings", "person"];

// ------------------------------------------------------------------ loading
async function loadAggregates(moving) {
  await loadPeriods(moving ? PERIODS_MOVING_MS : PERIODS_IDLE_MS);
  const p = period();
  const months = trendMonths(p);
  const q = `kind=${S.kind}`;
  const [report, trend, towns] = await Promise.all([
    api(`/api/report?from=${p.from}&to=${p.to}`),
    api(`/api/counts/grouped?${q}&group_by=month&from=${months[0]}-01&to=${p.to}`),
    api(`/api/counts/grouped?${q}&group_by=town&from=${p.from}&to=${p.to}`),
    loadTargets(),
  ]);
  S.report = Object.assign(report, { period: p }); S.trend = { months, rows: trend.rows, period: p }; S.towns = towns.rows;
  renderReport(); renderKpis(); renderTrend(); renderTowns(); renderTargets();
}

/* One pass of the live loop; re-entrant calls are folded into one more pass. */
async function tick() {
  if (S.running) { S.again = true; return; }
  S.running = true;
  try {
    do {
      S.again = false;
      await step();
    } while (S.again);
  } finally {
    S.running = false;
  }
}
app.refresh = tick;

async function step() {
  const now = Date.now();
  const fp = await loadStatus();
  const moving = fp !== S.fingerprint || (S.status && S.status.lag > 0) || !S.status;
  S.fingerprint = fp;
  if (S.view === "overview") {
    const aggDue = S.dirtyAgg || now - S.lastAgg > AGG_IDLE_MS ||
      (moving && now - S.lastAgg >= (S.status ? POLL_MS - 100 : 5000));
    if (aggDue) {
      S.dirtyAgg = false;
      try { await loadAggregates(moving); S.lastAgg = Date.now(); } catch (err) { console.warn("aggregates", err); S.dirtyAgg = true; }
    }
  }
  const alertEvery = S.sse === "open" ? ALERT_POLL_SSE_MS : ALERT_POLL_MS;
  if (S.dirtyAlerts || now - S.lastAlerts >= alertEvery - 100) {
    S.dirtyAlerts = false;
    try { await loadAlerts(); renderKpis(); renderToken(); S.lastAlerts = Date.now(); } catch (err) { console.warn("alerts", err); }
  }
  if (S.dirtyWarn || now - S.lastWarn > WARN_REFRESH_MS) {
    S.dirtyWarn = false;
    try { await loadWarnings(); renderToken(); S.lastWarn = Date.now(); } catch (err) { console.warn("warnings", err); }
  }
  if (S.view === "person" && S.dirtyPerson) {
    S.dirtyPerson = false;
    try { await loadPerson(); renderToken(); } catch (err) { console.warn("person", err); }
  }
}
function loop() {
  const next = () => setTimeout(loop, POLL_MS);
  if (document.hidden) { next(); return; }
  tick().then(next, (err) => { console.warn(err); next(); });
}

// ------------------------------------------------------------------ the address: which view, which filters
function parseRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const cut = raw.indexOf("?");
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const q = new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1));
  const parts = path.split("/").filter(Boolean).map((part) => { try { return decodeURIComponent(part); } catch (e) { return part; } });
  const view = VIEWS.includes(parts[0]) ? parts[0] : "overview";
  if (view === "alerts") {
    S.aq = { status: q.get("status") === "resolved" ? "resolved" : "open", rule: q.get("rule") || "", town: q.get("town") || "",
      sort: q.get("sort") === "newest" ? "newest" : "queue", escalated: q.get("escalated") === "true", offset: 0 };
    S.alertsKey = ""; S.alertList = null; S.dirtyAlerts = true; S.lastQueue = location.hash;
  } else if (view === "warnings") {
    S.wq = { rule: q.get("rule") || "", town: q.get("town") || "", snoozed: q.get("snoozed") === "true", offset: 0,
      asOf: /^\d{4}-\d{2}-\d{2}$/.test(q.get("as_of") || "") ? q.get("as_of") : "" };
    S.warnList = null; S.dirtyWarn = true; S.lastQueue = location.hash;
  } else if (view === "person") {
    const id = parts.slice(1).join("/");
    if (id !== S.personId) { S.person = null; S.personError = null; S.personAll = false; S.personReads = null; }
    S.personId = id; S.dirtyPerson = true;
  } else {
    S.dirtyAgg = true;
  }
  const before = S.view;
  S.view = view;
  showView();
  if (before !== view) window.scrollTo(0, 0);
  tick();
}

/* The address of a view with its filters (defaults left out); ``push``: a new history entry. */
app.go = (view, params, push) => {
  let hash = "#/";
  if (view === "person") hash = `#/person/${encodeURIComponent(params.id)}`;
  else if (view === "alerts" || view === "warnings") {
    const q = new URLSearchParams();
    const keep = view === "alerts" ? { status: "open", rule: "", town: "", sort: "queue", escalated: false }
      : { rule: "", town: "", snoozed: false, asOf: "" };
    for (const [k, dflt] of Object.entries(keep)) {
      const v = params[k];
      if (v !== undefined && v !== dflt && v !== "") q.set(k === "asOf" ? "as_of" : k, String(v));
    }
    hash = `#/${view}` + (q.toString() ? `?${q}` : "");
  }
  if (hash === location.hash) { parseRoute(); return; }
  if (push) location.hash = hash; else { history.replaceState(null, "", hash); parseRoute(); }
  const list = view === "alerts" ? "alerts-card" : view === "warnings" ? "warnings-card" : null;
  if (list && (params.rule || params.town) && push) setTimeout(() => $(list).scrollIntoView({ behavior: "smooth", block: "start" }), 50);
};

function showView() {
  for (const el of document.querySelectorAll("main > .view")) el.hidden = el.dataset.view !== S.view;
  for (const el of document.querySelectorAll("[data-nav]")) {
    const on = el.dataset.nav === S.view;
    el.classList.toggle("active", on);
    if (on) el.setAttribute("aria-current", "page"); else el.removeAttribute("aria-current");
  }
  document.body.dataset.view = S.view;
  $("person-back").setAttribute("href", S.lastQueue || "#/alerts");
  if (S.view === "alerts") { renderAlertMatrix(); renderAlertList(); }
  if (S.view === "warnings") renderWarnings();
  if (S.view === "person") renderPerson();
}

// ------------------------------------------------------------------ SSE (when the API has it)
async function sseLoop() {
  for (;;) {
    if (!S.token || S.tokenState === "invalid" || S.tokenState === "forbidden") { await sleep(3000); continue; }
    const ctrl = new AbortController();
    S.sseCtrl = ctrl;
    let wait = 3000;
    try {
      const headers = { Accept: "text/event-stream", Authorization: "Bearer " + S.token };
      if (S.lastEventId) headers["Last-Event-ID"] = S.lastEventId;
      const resp = await fetch("/api/alerts/stream", { headers, signal: ctrl.signal, cache: "no-store" });
      if (resp.status === 404 || resp.status === 405) { setSse("absent"); await sleep(60000); continue; }
      if (!resp.ok || !resp.body) { setSse("absent"); await sleep(10000); continue; }
      setSse("open");
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          sseMessage(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (err) {
      if (ctrl.signal.aborted) wait = 0;  // token changed: reconnect at once
    }
    setSse("absent");
    await sleep(wait);
  }
}
let sseTimer = null;
/* One frame: ``event: alert`` (an alert changed), ``warning`` (one fell due or cleared), ``revoked``. */
function sseMessage(block) {
  let data = "", id = null, kind = "message";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "data") data += (data ? "\n" : "") + value;
    else if (field === "id") id = value;
    else if (field === "event") kind = value;
  }
  if (id !== null) S.lastEventId = id;
  if (!data) return;
  if (kind === "revoked") { S.tokenState = "invalid"; renderToken(); if (S.sseCtrl) S.sseCtrl.abort(); return; }
  let about = null;
  try { about = JSON.parse(data).person_id || null; } catch (e) { /* not JSON: re-read anyway */ }
  if (kind === "warning") S.dirtyWarn = true; else S.dirtyAlerts = true;
  if (S.view === "person" && (about === null || about === S.personId)) S.dirtyPerson = true;
  clearTimeout(sseTimer);
  sseTimer = setTimeout(() => tick(), 250);
}
function setSse(state) {
  if (S.sse === state) return;
  S.sse = state;
  renderSseState();
}

// ------------------------------------------------------------------ rendering shared by the views
function redrawMeasure() { renderTrend(); renderTowns(); }

function applyI18n() {
  document.documentElement.lang = S.lang === "en" ? "en" : "zh-CN";
  document.title = `${t("title")} · careledger`;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("token-input").placeholder = t("token_placeholder");
  $("lookup-input").placeholder = t("lookup_placeholder");
  $("lang-toggle").textContent = t("lang_toggle");
  S.alertsKey = "";
  renderPeriodOptions(); renderTabs(redrawMeasure);
  renderStatus(); renderReport(); renderKpis(); renderTrend(); renderTowns(); renderTargets();
  renderSummary(); renderAlertMatrix(); renderAlertList(); renderWarnings(); renderPerson(); renderToken(); renderSseState();
}

/* The token bar: the form while there is no usable token (or the user asked to change it), else one line. */
function renderToken() {
  const note = $("token-note");
  note.textContent = tokenMessage();
  const ok = S.token && S.tokenState === "ok", viewer = S.token && S.tokenState === "forbidden";
  note.className = "note " + (ok ? "ok" : viewer ? "warn" : S.token ? "bad" : "");
  const editing = S.tokenEditing || !S.token || S.tokenState === "invalid";
  $("token-form").hidden = !editing;
  $("token-change").hidden = editing;
  $("token-bar").dataset.state = S.token ? S.tokenState : "none";
  $("lookup-form").hidden = Boolean(viewer);  // a viewer may not look persons up
}

// ------------------------------------------------------------------ wiring
function wire() {
  $("lang-toggle").addEventListener("click", () => {
    S.lang = S.lang === "zh" ? "en" : "zh";
    try { localStorage.setItem(LS_LANG, S.lang); } catch (e) { /* ignore */ }
    applyI18n();
  });
  $("period").addEventListener("change", (ev) => {
    S.period = ev.target.value;
    if (S.period === "custom") {
      const p = period();
      S.custom = { from: S.custom.from || p.from, to: S.custom.to || p.to };
      $("date-from").value = S.custom.from; $("date-to").value = S.custom.to;
    }
    $("custom-range").hidden = S.period !== "custom";
    S.dirtyAgg = true; tick();
  });
  for (const id of ["date-from", "date-to"]) {
    $(id).addEventListener("change", () => {
      const from = $("date-from").value, to = $("date-to").value;
      if (from && to && from <= to) { S.custom = { from, to }; S.dirtyAgg = true; tick(); }
    });
  }
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("token-input").value.trim());
  });
  $("token-clear").addEventListener("click", () => setToken(""));
  $("token-change").addEventListener("click", () => { S.tokenEditing = true; renderToken(); $("token-input").focus(); });
  const aq = (patch) => app.go("alerts", Object.assign({}, S.aq, patch), false);
  $("alert-status").addEventListener("change", (ev) => aq({ status: ev.target.value }));
  $("alert-rule").addEventListener("change", (ev) => aq({ rule: ev.target.value }));
  $("alert-town").addEventListener("change", (ev) => aq({ town: ev.target.value }));
  $("alert-sort").addEventListener("change", (ev) => aq({ sort: ev.target.value }));
  $("alert-escalated").addEventListener("change", (ev) => aq({ escalated: ev.target.checked }));
  const wq = (patch) => app.go("warnings", Object.assign({}, S.wq, patch), false);
  $("warning-rule").addEventListener("change", (ev) => wq({ rule: ev.target.value }));
  $("warning-town").addEventListener("change", (ev) => wq({ town: ev.target.value }));
  $("warning-snoozed").addEventListener("change", (ev) => wq({ snoozed: ev.target.checked }));
  $("warnings-date").addEventListener("change", (ev) => { if (ev.target.value) wq({ asOf: ev.target.value }); });
  $("report-csv").addEventListener("click", reportCsv);
  wireLookup();
  window.addEventListener("hashchange", parseRoute);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { S.dirtyAgg = true; tick(); } });
  let resizeTimer = null;  // the chart is drawn to its box's width: draw again when the box changes
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(renderTrend, 200); });
}
function setToken(token) {
  S.token = token;
  S.tokenState = token ? "ok" : "none";
  S.tokenEditing = false;
  try { if (token) localStorage.setItem(LS_TOKEN, token); else localStorage.removeItem(LS_TOKEN); } catch (e) { /* ignore */ }
  $("token-input").value = "";
  S.seenAlerts = null; S.alertsKey = ""; S.aq.offset = 0; S.wq.offset = 0;
  S.alertSummary = null; S.alertMatrix = null; S.alertList = null; S.warnSummary = null; S.warnList = null; S.person = null; S.personReads = null;
  S.dirtyAlerts = true; S.dirtyWarn = true; S.dirtyAgg = true; S.dirtyPerson = true;
  if (S.sseCtrl) S.sseCtrl.abort();
  S.me = null;
  renderToken(); loadMe(); tick();
}

/* Who the token is: shown in the token bar, offered as assignee; a viewer's token is known as such
 * before any person-level call answers 403. */
async function loadMe() {
  if (!S.token) { S.me = null; renderToken(); return; }
  try {
    S.me = await api("/api/me", { auth: true });
    if (!S.me.person_level) S.tokenState = "forbidden";
    if (S.me.role === "admin" && S.view === "person" && !S.personReads) S.dirtyPerson = true;  // who read it: admins
  } catch (err) {
    if (!authFailure(err)) S.me = null;
  }
  renderToken();
}

wire();
applyI18n();
loadMe();
parseRoute();
loop();
sseLoop();
// for tests and the curious: window.careledger.state()
window.careledger = { state: () => S, errorText,
  refresh: () => { S.dirtyAgg = S.dirtyAlerts = S.dirtyWarn = S.dirtyPerson = true; return tick(); } };
