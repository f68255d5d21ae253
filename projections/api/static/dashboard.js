/* careledger dashboard: the page's loop and wiring; the sections are views under js/views/.
 *
 * Aggregates (report, trends, towns, targets, status) are public; the alerts inbox and need
 * warnings need a bearer token, which the user pastes once (kept in localStorage).
 * Live: /api/status is polled every 2 s; aggregates are re-read when the stream moved (or at
 * least every 15 s), alerts every 3 s -- or pushed by /api/alerts/stream (SSE) when the API has
 * it, polling then continues slowly as a fallback.  The period selector offers only the
 * half-years and years that hold data (js/periods.js).
 */
import {
  $, ALERT_RULES, LS_LANG, LS_TOKEN, S, WARNING_RULES, api, app, errorText, h, name, sleep, t, tokenMessage,
} from "./js/core.js";
import { loadPeriods, period, renderPeriodOptions, trendMonths, warnDate } from "./js/periods.js";
import { loadAlerts, renderAlerts, renderSummary } from "./js/views/alerts.js";
import { renderKpis } from "./js/views/kpis.js";
import { renderReport, reportCsv } from "./js/views/report.js";
import { loadStatus, renderSseState, renderStatus } from "./js/views/status.js";
import { loadTargets, renderTargets } from "./js/views/targets.js";
import { renderTowns } from "./js/views/towns.js";
import { renderTabs, renderTrend } from "./js/views/trend.js";
import { loadWarnings, renderWarnings } from "./js/views/warnings.js";

const POLL_MS = 2000, AGG_IDLE_MS = 15000, ALERT_POLL_MS = 3000, ALERT_POLL_SSE_MS = 15000;
const WARN_REFRESH_MS = 30000, PERIODS_MOVING_MS = 10000, PERIODS_IDLE_MS = 120000;

// ------------------------------------------------------------------ loading
async function loadAggregates(moving) {
  const changed = await loadPeriods(moving ? PERIODS_MOVING_MS : PERIODS_IDLE_MS);
  if (changed && !S.warnDate) S.dirtyWarn = true;  // the default as-of date follows the period
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
  const aggDue = S.dirtyAgg || now - S.lastAgg > AGG_IDLE_MS ||
    (moving && now - S.lastAgg >= (S.status ? POLL_MS - 100 : 5000));
  if (aggDue) {
    S.dirtyAgg = false;
    try { await loadAggregates(moving); S.lastAgg = Date.now(); } catch (err) { console.warn("aggregates", err); S.dirtyAgg = true; }
  }
  const alertEvery = S.sse === "open" ? ALERT_POLL_SSE_MS : ALERT_POLL_MS;
  if (S.dirtyAlerts || now - S.lastAlerts >= alertEvery - 100) {
    S.dirtyAlerts = false;
    try { await loadAlerts(); renderKpis(); renderTokenNote(); S.lastAlerts = Date.now(); } catch (err) { console.warn("alerts", err); }
  }
  if (S.dirtyWarn || (aggDue && now - S.lastWarn > WARN_REFRESH_MS)) {
    S.dirtyWarn = false;
    try { await loadWarnings(); renderTokenNote(); S.lastWarn = Date.now(); } catch (err) { console.warn("warnings", err); }
  }
}
function loop() {
  const next = () => setTimeout(loop, POLL_MS);
  if (document.hidden) { next(); return; }
  tick().then(next, (err) => { console.warn(err); next(); });
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
function sseMessage(block) {
  let data = "", id = null;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "data") data += (data ? "\n" : "") + value;
    else if (field === "id") id = value;
  }
  if (id !== null) S.lastEventId = id;
  if (!data) return;
  S.dirtyAlerts = true;
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
  $("lang-toggle").textContent = t("lang_toggle");
  renderPeriodOptions(); renderTabs(redrawMeasure); renderRuleOptions();
  renderStatus(); renderReport(); renderKpis(); renderTrend(); renderTowns(); renderTargets();
  renderSummary(); renderAlerts(); renderWarnings(); renderTokenNote(); renderSseState();
}

function renderRuleOptions() {
  const all = h("option", { value: "", text: t("filter_all") });
  $("alert-rule").replaceChildren(all, ...ALERT_RULES.map((r) => h("option", { value: r, text: name("rule", r) })));
  $("alert-rule").value = S.alertRule;
  $("warning-rule").replaceChildren(all.cloneNode(true),
    ...WARNING_RULES.map((r) => h("option", { value: r, text: name("rule", r) })));
  $("warning-rule").value = S.warnRule;
  $("warnings-date").value = warnDate();
}

function renderTokenNote() {
  const note = $("token-note");
  note.textContent = tokenMessage();
  note.className = "note " + (S.token && S.tokenState === "ok" ? "ok" : S.token ? "bad" : "");
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
    S.dirtyAgg = true; if (!S.warnDate) S.dirtyWarn = true;
    renderRuleOptions(); tick();
  });
  for (const id of ["date-from", "date-to"]) {
    $(id).addEventListener("change", () => {
      const from = $("date-from").value, to = $("date-to").value;
      if (from && to && from <= to) { S.custom = { from, to }; S.dirtyAgg = true; if (!S.warnDate) S.dirtyWarn = true; tick(); }
    });
  }
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("token-input").value.trim());
  });
  $("token-clear").addEventListener("click", () => setToken(""));
  $("alert-status").addEventListener("change", (ev) => { S.alertStatus = ev.target.value; S.alertOffset = 0; S.dirtyAlerts = true; tick(); });
  $("alert-rule").addEventListener("change", (ev) => { S.alertRule = ev.target.value; S.alertOffset = 0; S.dirtyAlerts = true; tick(); });
  $("warning-rule").addEventListener("change", (ev) => { S.warnRule = ev.target.value; S.warnOffset = 0; S.dirtyWarn = true; tick(); });
  $("warnings-date").addEventListener("change", (ev) => {
    if (!ev.target.value) return;
    S.warnDate = ev.target.value; S.warnOffset = 0; S.dirtyWarn = true; tick();
  });
  $("report-csv").addEventListener("click", reportCsv);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { S.dirtyAgg = true; tick(); } });
  let resizeTimer = null;  // the chart is drawn to its box's width: draw again when the box changes
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(renderTrend, 200); });
}
function setToken(token) {
  S.token = token;
  S.tokenState = token ? "ok" : "none";
  try { if (token) localStorage.setItem(LS_TOKEN, token); else localStorage.removeItem(LS_TOKEN); } catch (e) { /* ignore */ }
  $("token-input").value = "";
  S.seenAlerts = null; S.alertsKey = ""; S.alertOffset = 0; S.warnOffset = 0;
  S.dirtyAlerts = true; S.dirtyWarn = true; S.dirtyAgg = true;
  if (S.sseCtrl) S.sseCtrl.abort();
  renderTokenNote(); tick();
}

wire();
applyI18n();
loop();
sseLoop();
// for tests and the curious: window.careledger.state()
window.careledger = { state: () => S, errorText,
  refresh: () => { S.dirtyAgg = S.dirtyAlerts = S.dirtyWarn = true; return tick(); } };
