/* careledger dashboard: fetches the read API and renders the page; no framework, no build step.
 *
 * Aggregates (report, trends, towns, targets, status) are public; the alerts inbox and need
 * warnings need a bearer token, which the user pastes once (kept in localStorage).
 * Live: /api/status is polled every 2 s; aggregates are re-read when the stream moved (or at
 * least every 15 s), alerts every 3 s -- or pushed by /api/alerts/stream (SSE) when the API has
 * it, polling then continues slowly as a fallback.
 */
"use strict";

(function () {
  const LS_TOKEN = "careledger.token", LS_LANG = "careledger.lang";
  const POLL_MS = 2000, AGG_IDLE_MS = 15000, ALERT_POLL_MS = 3000, ALERT_POLL_SSE_MS = 15000;
  const WARN_REFRESH_MS = 30000, PAGE = 15;
  const ALERT_RULES = ["visit_hazard", "duplicate_payment", "payment_after_end", "amount_out_of_range"];
  const RULE_SEVERITY = { visit_hazard: "critical", duplicate_payment: "high", payment_after_end: "high",
    amount_out_of_range: "medium" };
  const WARNING_RULES = ["visit_overdue", "need_unmet", "certificate_expiring", "nursing_subsidy_missing"];
  const KINDS = ["payment", "service", "visit", "job", "need", "person"];
  const TOWN_GRID = [
    [null, "萧王庙街道", "江口街道", "方桥街道", null],
    ["溪口镇", "锦屏街道", "岳林街道", "西坞街道", null],
    ["大堰镇", "尚田街道", "莼湖镇", "裘村镇", "松岙镇"],
  ];
  const LAYOUT = JSON.parse(document.getElementById("report-layout").textContent || "{}");
  const NAMES = window.I18N_NAMES;

  let storedLang = "zh", storedToken = "";
  try {
    storedLang = localStorage.getItem(LS_LANG) || "zh";
    storedToken = localStorage.getItem(LS_TOKEN) || "";
  } catch (e) { /* storage disabled: defaults */ }

  const S = {
    lang: storedLang === "en" ? "en" : "zh",
    token: storedToken,
    tokenState: storedToken ? "ok" : "none",
    period: "auto", custom: { from: "", to: "" },
    latestMonth: null,
    kind: "payment", measure: "events",
    alertStatus: "open", alertRule: "", alertOffset: 0,
    warnRule: "", warnOffset: 0, warnDate: "",
    report: null, trend: null, towns: null, targets: null, status: null, statusError: null,
    alerts: null, alertsKey: "", summary: null, warnings: null,
    seenAlerts: null, freshAlerts: new Set(), kpiPrev: {},
    fingerprint: "", lastAgg: 0, lastAlerts: 0, lastWarn: 0, lastOk: 0,
    dirtyAgg: true, dirtyAlerts: true, dirtyWarn: true,
    sse: "absent", sseCtrl: null, lastEventId: "",
    running: false, again: false,
  };

  // ------------------------------------------------------------------ helpers
  const $ = (id) => document.getElementById(id);
  const dict = () => window.I18N[S.lang];
  function t(key, vars) {
    let s = dict()[key];
    if (s === undefined) s = window.I18N.zh[key] !== undefined ? window.I18N.zh[key] : key;
    for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
    return s;
  }
  function name(group, id, fallback) {
    const entry = (NAMES[group] || {})[id];
    if (entry === undefined) return fallback !== undefined ? fallback : id;
    if (typeof entry === "string") return S.lang === "en" ? entry : id;  // towns: zh is the id
    return S.lang === "en" ? entry[1] : entry[0];
  }
  const townName = (town) => (town ? name("town", town, town) : "—");
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  const NF0 = new Intl.NumberFormat("en-US");
  const NF1 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const NF2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const fmtInt = (v) => (v === null || v === undefined ? "—" : NF0.format(v));
  const fmtWan = (fen) => (fen === null || fen === undefined ? "—" : NF2.format(fen / 1e6));
  const fmtYuan = (fen) => (fen === null || fen === undefined ? "—" : NF2.format(fen / 100));
  function fmtCompactWan(fen) {  // axis labels: amount in 万元
    const wan = fen / 1e6;
    return wan >= 100 ? NF0.format(Math.round(wan)) : NF1.format(wan);
  }
  // business times are Asia/Shanghai (CONTRACT §1); acknowledgement times are stored in UTC
  const TIME_FMT = new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
  function fmtTime(s) {
    if (!s) return "—";
    const d = new Date(s);
    return isNaN(d.getTime()) ? String(s).replace("T", " ").slice(0, 16) : TIME_FMT.format(d).replace(",", "");
  }
  const shortId = (s, n) => (s && s.length > (n || 10) ? s.slice(0, n || 10) + "…" : s || "—");
  const pad = (n) => String(n).padStart(2, "0");
  function todayIso() {
    const d = new Date();
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }
  function lastDay(y, m) { return new Date(Date.UTC(y, m, 0)).getUTCDate(); }

  function periodRange(code) {
    const m = /^(\d{4})(H[12])?$/.exec(code);
    if (!m) return null;
    const y = +m[1];
    if (m[2] === "H1") return { from: `${y}-01-01`, to: `${y}-06-30` };
    if (m[2] === "H2") return { from: `${y}-07-01`, to: `${y}-12-31` };
    return { from: `${y}-01-01`, to: `${y}-12-31` };
  }
  function periodName(code) {
    const m = /^(\d{4})(H[12])?$/.exec(code || "");
    if (!m) return code || "";
    return t(m[2] === "H1" ? "half1" : m[2] === "H2" ? "half2" : "year", { y: m[1] });
  }
  function autoCode() {
    const month = S.latestMonth || todayIso().slice(0, 7);
    return `${month.slice(0, 4)}H${+month.slice(5, 7) <= 6 ? 1 : 2}`;
  }
  function period() {
    if (S.period === "custom" && S.custom.from && S.custom.to) {
      return { code: "custom", from: S.custom.from, to: S.custom.to };
    }
    const code = S.period === "auto" || S.period === "custom" ? autoCode() : S.period;
    return Object.assign({ code }, periodRange(code));
  }
  /* The 12 months ending with the period's last month. */
  function trendMonths(p) {
    const y = +p.to.slice(0, 4), m = +p.to.slice(5, 7);
    const out = [];
    for (let i = 11; i >= 0; i--) {
      let yy = y, mm = m - i;
      while (mm <= 0) { mm += 12; yy -= 1; }
      out.push(`${yy}-${pad(mm)}`);
    }
    return out;
  }
  const warnDate = () => S.warnDate || period().to;

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    const withToken = S.token && (opts.auth || S.tokenState !== "invalid");
    if (withToken) headers.Authorization = "Bearer " + S.token;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method: opts.method || "GET", headers, cache: "no-store",
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined });
    if (resp.status === 401 && withToken && !opts.auth) {  // a bad token must not hide the aggregates
      S.tokenState = "invalid";
      return api(path, opts);
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const detail = data && (data.message || (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)));
      throw new ApiError(resp.status, detail || resp.statusText);
    }
    return data;
  }
  function authFailure(err) {
    if (err && err.status === 401) { S.tokenState = "invalid"; return true; }
    if (err && err.status === 403) { S.tokenState = "forbidden"; return true; }
    return false;
  }
  let toastTimer = null;
  function toast(message, bad) {
    const el = $("toast");
    el.textContent = message;
    el.className = "toast show" + (bad ? " bad" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.className = "toast"; }, 3200);
  }

  // ------------------------------------------------------------------ loading
  async function loadStatus() {
    try {
      S.status = await api("/api/status");
      S.statusError = null;
      S.lastOk = Date.now();
    } catch (err) {
      S.status = null;
      S.statusError = err.status ? "kafka" : "api";
    }
    renderStatus();
    const s = S.status;
    return s ? JSON.stringify([s.lag, s.events_end_offsets, s.projections]) : "error:" + Date.now();
  }

  async function discoverLatest() {
    if (S.period !== "auto") return;
    const from = S.latestMonth ? `&from=${S.latestMonth}-01` : "";
    const today = todayIso();
    const data = await api(`/api/counts/grouped?kind=payment&group_by=month&to=${today}${from}`);
    let latest = S.latestMonth;
    for (const row of data.rows) if ((row.events || 0) > 0 && (!latest || row.month > latest)) latest = row.month;
    if (latest !== S.latestMonth) {
      S.latestMonth = latest;
      renderPeriodOptions();
    }
  }

  async function loadAggregates() {
    await discoverLatest();
    const p = period();
    const months = trendMonths(p);
    const q = `kind=${S.kind}`;
    const [report, trend, towns, targets] = await Promise.all([
      api(`/api/report?from=${p.from}&to=${p.to}`),
      api(`/api/counts/grouped?${q}&group_by=month&from=${months[0]}-01&to=${p.to}`),
      api(`/api/counts/grouped?${q}&group_by=town&from=${p.from}&to=${p.to}`),
      api("/api/targets"),
    ]);
    S.report = report; S.trend = { months, rows: trend.rows, period: p }; S.towns = towns.rows; S.targets = targets.items;
    renderReport(); renderKpis(); renderTrend(); renderTowns(); renderTargets();
  }

  async function loadAlerts() {
    if (!S.token || S.tokenState === "invalid") { S.alerts = null; S.summary = null; renderAlerts(); renderSummary(); return; }
    const base = `/api/alerts?limit=${PAGE}&offset=${S.alertOffset}` +
      (S.alertStatus ? `&status=${S.alertStatus}` : "") + (S.alertRule ? `&rule=${S.alertRule}` : "");
    try {
      const [page, ...counts] = await Promise.all([
        api(base, { auth: true }),
        ...ALERT_RULES.map((r) => api(`/api/alerts?status=open&rule=${r}&limit=0`, { auth: true })),
      ]);
      S.tokenState = "ok";
      S.summary = ALERT_RULES.map((r, i) => ({ rule: r, total: counts[i].total }));
      const key = JSON.stringify(page);
      if (key !== S.alertsKey) {
        const ids = page.items.map((a) => a.alert_id);
        if (S.seenAlerts !== null) for (const id of ids) if (!S.seenAlerts.has(id)) S.freshAlerts.add(id);
        S.seenAlerts = S.seenAlerts || new Set();
        for (const id of ids) S.seenAlerts.add(id);
        S.alerts = page; S.alertsKey = key;
        renderAlerts();
      }
    } catch (err) {
      if (!authFailure(err)) throw err;
      S.alerts = null; S.summary = null; S.alertsKey = "";
      renderAlerts();
    }
    renderSummary(); renderKpis(); renderTokenNote();
  }

  async function loadWarnings() {
    if (!S.token || S.tokenState === "invalid") { S.warnings = null; renderWarnings(); return; }
    const url = `/api/warnings?as_of=${warnDate()}&limit=${PAGE}&offset=${S.warnOffset}` +
      (S.warnRule ? `&rule=${S.warnRule}` : "");
    $("warnings-total").textContent = t("loading");
    try {
      S.warnings = await api(url, { auth: true });
    } catch (err) {
      if (!authFailure(err)) throw err;
      S.warnings = null;
    }
    renderWarnings(); renderTokenNote();
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
  async function step() {
    const now = Date.now();
    const fp = await loadStatus();
    const moving = fp !== S.fingerprint || (S.status && S.status.lag > 0) || !S.status;
    S.fingerprint = fp;
    const aggDue = S.dirtyAgg || now - S.lastAgg > AGG_IDLE_MS ||
      (moving && now - S.lastAgg >= (S.status ? POLL_MS - 100 : 5000));
    if (aggDue) {
      S.dirtyAgg = false;
      try { await loadAggregates(); S.lastAgg = Date.now(); } catch (err) { console.warn("aggregates", err); S.dirtyAgg = true; }
    }
    const alertEvery = S.sse === "open" ? ALERT_POLL_SSE_MS : ALERT_POLL_MS;
    if (S.dirtyAlerts || now - S.lastAlerts >= alertEvery - 100) {
      S.dirtyAlerts = false;
      try { await loadAlerts(); S.lastAlerts = Date.now(); } catch (err) { console.warn("alerts", err); }
    }
    if (S.dirtyWarn || (aggDue && now - S.lastWarn > WARN_REFRESH_MS)) {
      S.dirtyWarn = false;
      try { await loadWarnings(); S.lastWarn = Date.now(); } catch (err) { console.warn("warnings", err); }
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
    clearTimeout(sseMessage.timer);
    sseMessage.timer = setTimeout(() => tick(), 250);
  }
  function setSse(state) {
    if (S.sse === state) return;
    S.sse = state;
    renderSseState();
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ------------------------------------------------------------------ rendering
  function applyI18n() {
    document.documentElement.lang = S.lang === "en" ? "en" : "zh-CN";
    document.title = `${t("title")} · careledger`;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    $("token-input").placeholder = t("token_placeholder");
    $("lang-toggle").textContent = t("lang_toggle");
    renderPeriodOptions(); renderTabs(); renderRuleOptions();
    renderStatus(); renderReport(); renderKpis(); renderTrend(); renderTowns(); renderTargets();
    renderSummary(); renderAlerts(); renderWarnings(); renderTokenNote(); renderSseState();
  }

  function renderPeriodOptions() {
    const sel = $("period");
    const now = new Date().getFullYear();
    const latestYear = S.latestMonth ? +S.latestMonth.slice(0, 4) : now;
    const opts = [["auto", `${t("period_auto")} · ${periodName(autoCode())}`]];
    for (let y = Math.max(now, latestYear); y >= Math.min(2023, latestYear - 1); y--) {
      opts.push([`${y}H2`, periodName(`${y}H2`)], [`${y}H1`, periodName(`${y}H1`)], [`${y}`, periodName(`${y}`)]);
    }
    opts.push(["custom", t("period_custom")]);
    sel.replaceChildren(...opts.map(([v, label]) => h("option", { value: v, text: label })));
    sel.value = S.period;
    $("custom-range").hidden = S.period !== "custom";
  }

  function renderTabs() {
    $("kind-tabs").replaceChildren(...KINDS.map((k) => h("button", {
      type: "button", role: "tab", class: "tab" + (S.kind === k ? " active" : ""), "aria-selected": S.kind === k,
      "data-kind": k, text: t("kind_" + k),
      onclick: () => {
        S.kind = k;
        if (S.measure === "amount" && k !== "payment") S.measure = "events";
        renderTabs(); S.dirtyAgg = true; tick();
      },
    })));
    const measures = ["events", "persons"].concat(S.kind === "payment" ? ["amount"] : []);
    $("measure-tabs").replaceChildren(...measures.map((m) => h("button", {
      type: "button", role: "tab", class: "tab" + (S.measure === m ? " active" : ""), "aria-selected": S.measure === m,
      "data-measure": m, text: t("measure_" + m),
      onclick: () => { S.measure = m; renderTabs(); renderTrend(); renderTowns(); },
    })));
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

  function renderStatus() {
    const live = $("live"), text = $("live-text"), box = $("status");
    const time = new Date(S.lastOk || Date.now()).toLocaleTimeString(S.lang === "en" ? "en-GB" : "zh-CN", { hour12: false });
    if (S.status) {
      const lag = S.status.lag;
      live.dataset.state = lag === 0 ? "ok" : "lag";
      text.textContent = lag === 0 ? t("live_ok") : t("live_lag", { n: fmtInt(lag) });
    } else {
      live.dataset.state = "down";
      text.textContent = S.statusError === "api" ? t("live_api_down") : t("live_down");
    }
    live.title = t("updated", { t: time });
    const rows = [];
    if (S.status) {
      rows.push(h("div", { class: "stat-big" },
        h("span", { class: "stat-num", "data-testid": "lag", text: fmtInt(S.status.lag) }),
        h("span", { class: "stat-label", text: t("status_lag") }),
        h("span", { class: "pill " + (S.status.caught_up ? "ok" : "warn"),
          text: S.status.caught_up ? t("status_caught_up") : t("status_behind") })));
      for (const [proj, info] of Object.entries(S.status.projections || {})) {
        rows.push(h("div", { class: "stat-row" }, h("span", { text: `${t("status_projection")} ${proj}` }),
          h("span", { class: "num", text: fmtInt(info.lag) })));
      }
      const end = Object.values(S.status.events_end_offsets || {}).reduce((a, b) => a + b, 0);
      rows.push(h("div", { class: "stat-row" }, h("span", { text: t("status_offsets") }),
        h("span", { class: "num", text: fmtInt(end) })));
    } else {
      rows.push(h("div", { class: "stat-row bad", text: text.textContent }));
    }
    rows.push(h("div", { class: "stat-foot", text: `${t("updated", { t: time })} · ${S.sse === "open" ? t("sse_on") : t("sse_off")}` }));
    box.replaceChildren(...rows);
  }
  function renderSseState() {
    const el = $("sse-state");
    el.textContent = S.sse === "open" ? "● " + t("sse_on") : "○ " + t("sse_off");
    el.className = "sse " + (S.sse === "open" ? "on" : "off");
  }

  function reportLabel(row) {
    return S.lang === "en" ? name("metric", row.metric, row.label_zh) : row.label_zh;
  }
  function reportNote(row) {
    if (row.kind === "posting") return row.positions === null || row.positions === undefined ? "＊" : t("positions", { n: fmtInt(row.positions) });
    const entry = NAMES.note[row.metric];
    if (entry) return S.lang === "en" ? entry[1] : entry[0];
    const layout = LAYOUT[row.metric];
    return S.lang === "en" && layout ? layout.note : "";
  }
  function cell(col, value, shown, formatter) {
    const td = h("td", { class: "num", "data-col": col });
    if (shown === null) {  // not applicable to this line (an amount of a non-payment line)
      td.dataset.value = "";
    } else if (!shown) {
      td.textContent = "—";
      td.classList.add("muted");
      if (value !== null && value !== undefined) td.title = t("not_published", { v: formatter(value) });
      td.dataset.value = "";
    } else if (value === null || value === undefined) {
      td.textContent = "＊";
      td.title = t("suppressed");
      td.dataset.value = "";
    } else {
      td.textContent = formatter(value);
      td.dataset.value = String(value);
    }
    return td;
  }
  function renderReport() {
    const body = $("report-table").tBodies[0];
    const p = period();
    $("report-sub").textContent = t("report_sub", { from: p.from, to: p.to }) + (p.code !== "custom" ? ` · ${periodName(p.code)}` : "");
    if (!S.report) { body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "loading", text: t("loading") }))); return; }
    body.replaceChildren(...S.report.rows.map((row, i) => {
      const layout = LAYOUT[row.metric] || { persons: true, events: true, amount: row.kind === "payment" };
      const payment = row.kind === "payment";
      return h("tr", { "data-metric": row.metric, "data-kind": row.kind, class: "k-" + row.kind },
        h("td", { class: "num muted", text: i + 1 }),
        h("td", { class: "label", "data-col": "label", title: row.metric, text: reportLabel(row) }),
        cell("persons", row.persons, layout.persons, fmtInt),
        cell("events", row.events, layout.events, fmtInt),
        cell("amount_wan", row.amount_fen, payment ? layout.amount : null, fmtWan),
        cell("amount_yuan", row.amount_fen, payment ? layout.amount : null, fmtYuan),
        h("td", { class: "note", "data-col": "note", "data-positions": row.positions ?? "", text: reportNote(row) }));
    }));
  }
  function reportCsv() {
    if (!S.report) return;
    const esc = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
    const lines = [["metric", "kind", "key", "label_zh", "persons", "events", "amount_yuan", "note"].join(",")];
    for (const row of S.report.rows) {
      const layout = LAYOUT[row.metric] || { persons: true, events: true };
      const note = row.kind === "posting" ? `${row.positions ?? ""} positions` : (layout.note || "");
      lines.push([row.metric, row.kind, row.key || "", row.label_zh,
        layout.persons && row.persons !== null ? row.persons : "",
        layout.events && row.events !== null ? row.events : "",
        row.kind === "payment" && row.amount_fen !== null ? (row.amount_fen / 100).toFixed(2) : "", note].map(esc).join(","));
    }
    const blob = new Blob(["\ufeff" + lines.join("\n") + "\n"], { type: "text/csv;charset=utf-8" });
    const a = h("a", { href: URL.createObjectURL(blob), download: `report-${S.report.from}-${S.report.to}.csv` });
    document.body.appendChild(a); a.click(); a.remove();
  }

  function renderKpis() {
    const box = $("kpis");
    const rows = (S.report && S.report.rows) || [];
    const sum = (pred, field) => rows.filter(pred).reduce((a, r) => a + (r[field] || 0), 0);
    const pick = (metric, field) => { const r = rows.find((x) => x.metric === metric); return r ? r[field] : null; };
    const openAlerts = S.summary ? S.summary.reduce((a, s) => a + s.total, 0) : null;
    const kpis = [
      ["amount", t("kpi_amount"), S.report ? fmtWan(sum((r) => r.kind === "payment", "amount_fen")) : "—", t("unit_wan"),
        S.report ? sum((r) => r.kind === "payment", "amount_fen") : null],
      ["payments", t("kpi_payments"), fmtInt(S.report ? sum((r) => r.kind === "payment", "events") : null), t("unit_times"),
        S.report ? sum((r) => r.kind === "payment", "events") : null],
      ["services", t("kpi_services"), fmtInt(S.report ? sum((r) => r.kind === "service", "events") : null), t("unit_times"),
        S.report ? sum((r) => r.kind === "service", "events") : null],
      ["visits", t("kpi_visits"), fmtInt(pick("home_visit", "events")), t("unit_times"), pick("home_visit", "events")],
      ["jobs", t("kpi_jobs"), fmtInt(pick("new_employment", "persons")), t("unit_persons"), pick("new_employment", "persons")],
      ["alerts", t("kpi_alerts"), openAlerts === null ? "🔒" : fmtInt(openAlerts),
        openAlerts === null ? t("needs_token") : t("unit_items"), openAlerts],
    ];
    box.replaceChildren(...kpis.map(([id, label, value, unit, raw]) => {
      const prev = S.kpiPrev[id];
      const delta = raw !== null && prev !== undefined && prev !== null && raw > prev ? raw - prev : 0;
      if (raw !== null) S.kpiPrev[id] = raw;
      const card = h("div", { class: "kpi kpi-" + id, "data-kpi": id },
        h("div", { class: "kpi-label", text: label }),
        h("div", { class: "kpi-value" }, h("span", { text: value }), h("small", { text: unit })));
      if (delta > 0) {
        card.appendChild(h("div", { class: "kpi-delta", text: "▲ " + (id === "amount" ? fmtWan(delta) : fmtInt(delta)) }));
        card.classList.add("bump");
      }
      return card;
    }));
  }

  function measureOf(row) {
    if (!row) return 0;
    if (S.measure === "amount") return row.amount_fen || 0;
    if (S.measure === "persons") return row.persons || 0;
    return row.events || 0;
  }
  const measureFmt = () => (S.measure === "amount" ? (v) => `${fmtWan(v)}` : fmtInt);

  function renderTrend() {
    const box = $("trend-chart");
    if (!S.trend) { box.textContent = t("loading"); return; }
    const byMonth = Object.fromEntries(S.trend.rows.map((r) => [r.month, r]));
    const p = S.trend.period;
    const data = S.trend.months.map((m, i) => {
      const v = measureOf(byMonth[m]);
      const mm = +m.slice(5, 7);
      return {
        label: S.lang === "en" ? ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][mm - 1] : `${mm}月`,
        sub: i === 0 || mm === 1 ? m.slice(0, 4) : "",
        value: v, strong: m >= p.from.slice(0, 7) && m <= p.to.slice(0, 7),
        line: S.measure === "events" && byMonth[m] ? byMonth[m].persons || 0 : 0,
        title: `${m} · ${t("kind_" + S.kind)} · ${t("measure_" + S.measure)}: ${measureFmt()(v)}` +
          (S.measure === "amount" ? " " + t("unit_wan") : "") +
          (S.measure === "events" && byMonth[m] ? ` · ${t("measure_persons")}: ${fmtInt(byMonth[m].persons)}` : ""),
      };
    });
    window.Charts.barChart(box, data, {
      format: measureFmt(), tickFormat: S.measure === "amount" ? fmtCompactWan : (v) => NF0.format(v),
      empty: t("no_data"), label: `${t("by_month")} ${t("kind_" + S.kind)}`, line: S.measure === "events",
    });
    if (S.measure === "events") {
      box.appendChild(h("div", { class: "legend" },
        h("span", { class: "lg-bar" }), t("measure_events"), h("span", { class: "lg-line" }), t("measure_persons")));
    }
  }

  function renderTowns() {
    const box = $("town-grid");
    if (!S.towns) { box.textContent = t("loading"); return; }
    const byTown = Object.fromEntries(S.towns.map((r) => [r.town, r]));
    const known = new Set(TOWN_GRID.flat().filter(Boolean));
    const extra = S.towns.map((r) => r.town).filter((tn) => !known.has(tn));
    const grid = TOWN_GRID.map((row) => row.slice());
    for (let i = 0; i < extra.length; i += 5) grid.push(extra.slice(i, i + 5));
    const values = S.towns.map(measureOf);
    const max = Math.max(0, ...values), total = values.reduce((a, b) => a + b, 0);
    const fmt = measureFmt();
    const tiles = [];
    for (const row of grid) {
      for (let c = 0; c < 5; c++) {
        const town = row[c];
        if (!town) { tiles.push(h("div", { class: "tile void" })); continue; }
        const v = measureOf(byTown[town]);
        const ratio = max > 0 ? v / max : 0;
        const share = total > 0 ? `${(100 * v / total).toFixed(1)}%` : "—";
        tiles.push(h("div", {
          class: "tile" + (ratio > 0.55 ? " dark" : ""), "data-town": town, style: `background:${window.Charts.heat(ratio)}`,
          title: `${town} · ${t("kind_" + S.kind)} · ${t("measure_" + S.measure)}: ${fmt(v)} (${share})`,
        },
        h("div", { class: "tile-name", text: townName(town) }),
        h("div", { class: "tile-value", text: fmt(v) }),
        h("div", { class: "tile-share", text: t("share", { p: share }) })));
      }
    }
    box.replaceChildren(...tiles);
  }

  function renderTargets() {
    const box = $("targets");
    if (!S.targets) { box.textContent = t("loading"); return; }
    box.replaceChildren(...S.targets.map((tg) => {
      const unit = tg.measure === "positions" ? t("unit_positions") : t("unit_persons");
      const label = S.lang === "en" ? name("metric", tg.metric, tg.label_zh) : tg.label_zh;
      const pct = tg.progress === null || tg.progress === undefined ? "＊" : `${Math.round(tg.progress * 100)}%`;
      return h("div", { class: "target", "data-metric": tg.metric },
        h("div", { class: "target-head" }, h("span", { class: "target-label", text: label }),
          h("span", { class: "target-period", text: periodName(tg.period) })),
        window.Charts.progress(tg.progress),
        h("div", { class: "target-foot" },
          h("span", { text: t("target_of", { cur: fmtInt(tg.current), target: fmtInt(tg.target), unit }) }),
          h("strong", { text: pct })));
    }));
  }

  function renderSummary() {
    const box = $("alert-summary");
    if (!S.summary) { box.replaceChildren(h("div", { class: "locked", text: "🔒 " + tokenMessage() })); return; }
    const max = Math.max(1, ...S.summary.map((s) => s.total));
    box.replaceChildren(...S.summary.map((s) => h("div", {
      class: "sum-row", "data-rule": s.rule, title: name("rule", s.rule),
      onclick: () => { S.alertRule = s.rule; S.alertOffset = 0; S.alertStatus = "open"; $("alert-status").value = "open";
        $("alert-rule").value = s.rule; S.dirtyAlerts = true; tick(); $("alerts-card").scrollIntoView({ behavior: "smooth" }); },
    },
    h("span", { class: "sum-label", text: name("rule", s.rule) }),
    h("span", { class: "sum-bar" }, h("span", { class: "sev-bg-" + RULE_SEVERITY[s.rule], style: `width:${(100 * s.total / max).toFixed(1)}%` })),
    h("span", { class: "num", text: fmtInt(s.total) }))));
  }

  function tokenMessage() {
    if (!S.token) return t("token_none");
    if (S.tokenState === "invalid") return t("token_invalid");
    if (S.tokenState === "forbidden") return t("token_forbidden");
    return t("token_saved");
  }
  function renderTokenNote() {
    const note = $("token-note");
    note.textContent = tokenMessage();
    note.className = "note " + (S.token && S.tokenState === "ok" ? "ok" : S.token ? "bad" : "");
  }

  function alertState(a) {
    if (a.status === "resolved") return "resolved";
    return a.acknowledged_by ? "acknowledged" : "open";
  }
  function alertDetail(a) {
    if (a.hazard) return name("hazard", a.hazard);
    if (a.program) return `${name("program", a.program)} · ${a.period || ""}`;
    return "";
  }
  function renderAlerts() {
    const body = $("alerts-table").tBodies[0];
    if (!S.alerts) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "locked", text: "🔒 " + tokenMessage() })));
      $("alerts-total").textContent = "";
      $("alerts-pager").replaceChildren();
      return;
    }
    $("alerts-total").textContent = t("total", { n: fmtInt(S.alerts.total) });
    body.replaceChildren(...S.alerts.items.map((a) => {
      const state = alertState(a);
      const fresh = S.freshAlerts.has(a.alert_id);
      const by = state === "resolved" ? `${a.resolved_by || ""} · ${fmtTime(a.resolved_at)}` :
        state === "acknowledged" ? `${a.acknowledged_by} · ${fmtTime(a.acknowledged_at)}` : "";
      return h("tr", {
        "data-alert-id": a.alert_id, "data-severity": a.severity, "data-rule": a.rule,
        "data-event-ids": (a.event_ids || []).join(" "), "data-person": a.person_id,
        class: `sev-row-${a.severity}${fresh ? " fresh" : ""}`,
      },
      h("td", {}, h("span", { class: `sev sev-${a.severity}`, text: t("sev_" + a.severity) })),
      h("td", {}, h("div", { class: "rule", text: name("rule", a.rule) }), h("div", { class: "detail", text: alertDetail(a) })),
      h("td", { class: "mono", title: a.person_id, text: shortId(a.person_id, 12) }),
      h("td", { text: townName(a.town) }),
      h("td", { class: "nowrap", text: fmtTime(a.detected_at) }),
      h("td", { class: "mono ids" }, ...(a.event_ids || []).map((id) => h("span", { class: "chip", title: id, text: shortId(id, 8) }))),
      h("td", { class: "status-cell", "data-state": state },
        h("span", { class: "pill st-" + state, text: t("status_" + state) }),
        by ? h("div", { class: "by", text: by }) : null),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "btn small", "data-action": "acknowledge", disabled: state !== "open",
          text: t("ack"), onclick: (ev) => act(a, "acknowledge", ev.currentTarget) }),
        h("button", { type: "button", class: "btn small ghost", "data-action": "resolve", disabled: state === "resolved",
          text: t("resolve"), onclick: (ev) => act(a, "resolve", ev.currentTarget) })));
    }));
    pager($("alerts-pager"), S.alerts.total, S.alertOffset, (off) => { S.alertOffset = off; S.dirtyAlerts = true; tick(); });
    if (S.freshAlerts.size) setTimeout(() => S.freshAlerts.clear(), 6000);
  }
  async function act(alert, action, button) {
    const row = button.closest("tr");
    for (const b of row.querySelectorAll("button")) b.disabled = true;
    try {
      const updated = await api(`/api/alerts/${encodeURIComponent(alert.alert_id)}/${action}`,
        { method: "POST", auth: true, body: {} });
      const items = S.alerts.items.map((a) => (a.alert_id === updated.alert_id ? Object.assign({}, a, updated) : a));
      S.alerts = Object.assign({}, S.alerts, { items });
      S.alertsKey = "";
      renderAlerts();
      toast(t(action === "resolve" ? "resolved_toast" : "acked_toast", { id: alert.alert_id }));
      S.dirtyAlerts = true;
      tick();
    } catch (err) {
      authFailure(err);
      toast(t("action_failed", { msg: err.message }), true);
      renderAlerts();
    }
  }
  function pager(box, total, offset, go) {
    if (total <= PAGE) { box.replaceChildren(); return; }
    const page = Math.floor(offset / PAGE) + 1, pages = Math.ceil(total / PAGE);
    box.replaceChildren(
      h("button", { type: "button", class: "btn small ghost", disabled: offset <= 0, text: t("prev"), onclick: () => go(Math.max(0, offset - PAGE)) }),
      h("span", { class: "page", text: `${page} / ${NF0.format(pages)}` }),
      h("button", { type: "button", class: "btn small ghost", disabled: offset + PAGE >= total, text: t("next"), onclick: () => go(offset + PAGE) }));
  }

  function renderWarnings() {
    const body = $("warnings-table").tBodies[0];
    $("warnings-date").value = warnDate();
    if (!S.warnings) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "locked", text: "🔒 " + tokenMessage() })));
      $("warnings-total").textContent = t("warnings_sub");
      $("warnings-pager").replaceChildren();
      return;
    }
    $("warnings-total").textContent = `${t("warnings_sub")} · ${t("total", { n: fmtInt(S.warnings.total) })}`;
    body.replaceChildren(...S.warnings.items.map((w) => h("tr", { "data-rule": w.rule, "data-person": w.person_id },
      h("td", {}, h("span", { class: "wrule wr-" + w.rule, text: name("rule", w.rule) })),
      h("td", { class: "mono", title: w.person_id, text: shortId(w.person_id, 12) }),
      h("td", { text: townName(w.town) }),
      h("td", { class: "nowrap", text: w.since || "—" }),
      h("td", { class: "detail", text: w.need_id ? `${name("need", w.need || "", w.need || "")} ${w.need_id}`.trim() + (w.detail ? ` · ${w.detail}` : "") : (w.detail || "") }))));
    pager($("warnings-pager"), S.warnings.total, S.warnOffset, (off) => { S.warnOffset = off; S.dirtyWarn = true; tick(); });
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
  window.careledger = { state: () => S, refresh: () => { S.dirtyAgg = S.dirtyAlerts = S.dirtyWarn = true; return tick(); } };
})();
