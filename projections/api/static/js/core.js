/* careledger dashboard, shared by every view: state, words, DOM and number helpers, the API client.
 *
 * ES modules, no build step: dashboard.js (the page's loop) imports the views under js/views/,
 * one file per section; each view exports load*() (ask the API, fill S) and render*() (draw S).
 * A view that needs the loop to run again calls app.refresh() (set by dashboard.js).
 */

export const LS_TOKEN = "careledger.token", LS_LANG = "careledger.lang";
export const PAGE = 15;
export const ALERT_RULES = ["visit_hazard", "duplicate_payment", "payment_after_end", "amount_out_of_range"];
export const RULE_SEVERITY = { visit_hazard: "critical", duplicate_payment: "high", payment_after_end: "high",
  amount_out_of_range: "medium" };
export const WARNING_RULES = ["visit_overdue", "need_unmet", "certificate_expiring", "nursing_subsidy_missing"];
export const KINDS = ["payment", "service", "visit", "job", "need", "person"];
export const NAMES = window.I18N_NAMES;

let storedLang = "zh", storedToken = "";
try {
  storedLang = localStorage.getItem(LS_LANG) || "zh";
  storedToken = localStorage.getItem(LS_TOKEN) || "";
} catch (e) { /* storage disabled: defaults */ }

/* The page's whole state; views read and write their own parts. */
export const S = {
  lang: storedLang === "en" ? "en" : "zh",
  token: storedToken,
  tokenState: storedToken ? "ok" : "none",
  me: null,  // who the token is (GET /api/me): name, role, towns
  view: "overview",  // the view the address (#/...) names: overview, alerts, warnings, person
  period: "auto", custom: { from: "", to: "" },
  periods: null,  // half-years and years with data, newest first (periods.js)
  kind: "payment", measure: "events",
  report: null, trend: null, towns: null, targets: null, status: null, statusError: null,
  // the alerts work queue: its filters (from the address), the summary per rule and town, one page of the list
  aq: { status: "open", rule: "", town: "", sort: "queue", escalated: false, offset: 0 },
  alertSummary: null, alertMatrix: null, alertList: null, alertsKey: "",
  // the warnings work queue, as of a date (default: today in Asia/Shanghai, as the API judges it)
  wq: { rule: "", town: "", snoozed: false, offset: 0, asOf: "" },
  warnSummary: null, warnList: null,
  // the person page
  personId: "", person: null, personError: null, personAll: false, personReads: null,
  lastQueue: "", tokenEditing: false,
  seenAlerts: null, freshAlerts: new Set(), kpiPrev: {}, kpiPeriod: "",
  fingerprint: "", lastAgg: 0, lastAlerts: 0, lastWarn: 0, lastOk: 0, lastPeriods: 0,
  dirtyAgg: true, dirtyAlerts: true, dirtyWarn: true, dirtyPerson: false,
  sse: "absent", sseCtrl: null, lastEventId: "",
  running: false, again: false,
};

/* Hooks the page's loop fills in (dashboard.js): views ask for another pass through them. */
export const app = { refresh: () => {} };

// ------------------------------------------------------------------ words
export const $ = (id) => document.getElementById(id);
const dict = () => window.I18N[S.lang];
export function t(key, vars) {
  let s = dict()[key];
  if (s === undefined) s = window.I18N.zh[key] !== undefined ? window.I18N.zh[key] : key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
  return s;
}
export function name(group, id, fallback) {
  const entry = (NAMES[group] || {})[id];
  if (entry === undefined) return fallback !== undefined ? fallback : id;
  if (typeof entry === "string") return S.lang === "en" ? entry : id;  // towns: zh is the id
  return S.lang === "en" ? entry[1] : entry[0];
}
export const townName = (town) => (town ? name("town", town, town) : "—");
/* The district's towns in their usual order (the master data the dashboard knows), then any other. */
export const TOWNS = Object.keys(NAMES.town);
export function townOrder(towns) {
  const rank = (tn) => { const i = TOWNS.indexOf(tn); return i < 0 ? TOWNS.length : i; };
  return [...new Set(towns)].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}
/* An alert's or a warning's reason and what clears it, in the page's language. */
export const reasonOf = (item) => (S.lang === "en" ? item.reason_en || item.reason_zh : item.reason_zh || item.reason_en) || "";
export const clearsOf = (item) => (S.lang === "en" ? item.clears_en || item.clears_zh : item.clears_zh || item.clears_en) || "";
export const personHref = (personId) => "#/person/" + encodeURIComponent(personId);

// ------------------------------------------------------------------ DOM
export function h(tag, attrs, ...children) {
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
/* A table cell that, on a phone, shows its column's name before its value (CSS: td::before). */
export function td(label, attrs, ...children) {
  return h("td", Object.assign({ "data-label": label }, attrs || {}), ...children);
}

let toastTimer = null;
export function toast(message, bad) {
  const el = $("toast");
  el.textContent = message;
  el.className = "toast show" + (bad ? " bad" : "");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = "toast"; }, 3200);
}

// ------------------------------------------------------------------ numbers and dates
const NF0 = new Intl.NumberFormat("en-US");
const NF1 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const NF2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export const fmtInt = (v) => (v === null || v === undefined ? "—" : NF0.format(v));
export const fmtWan = (fen) => (fen === null || fen === undefined ? "—" : NF2.format(fen / 1e6));
export const fmtYuan = (fen) => (fen === null || fen === undefined ? "—" : NF2.format(fen / 100));
export function fmtCompactWan(fen) {  // axis labels: amount in 万元
  const wan = fen / 1e6;
  return wan >= 100 ? NF0.format(Math.round(wan)) : NF1.format(wan);
}
// business times are Asia/Shanghai (CONTRACT §1); acknowledgement times are stored in UTC
const TIME_FMT = new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
  day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
export function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  return isNaN(d.getTime()) ? String(s).replace("T", " ").slice(0, 16) : TIME_FMT.format(d).replace(",", "");
}
export const shortId = (s, n) => (s && s.length > (n || 10) ? s.slice(0, n || 10) + "…" : s || "—");
export const pad = (n) => String(n).padStart(2, "0");
export function todayIso() {
  const d = new Date();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
/* Today as the API judges it (Asia/Shanghai), whatever the browser's zone. */
const DAY_FMT = new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit" });
export const todayShanghai = () => DAY_FMT.format(new Date());
export function addDays(iso, n) {
  const d = new Date(iso + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}
export const daysBetween = (fromIso, toIso) =>
  Math.round((Date.parse(toIso.slice(0, 10) + "T00:00:00Z") - Date.parse(fromIso.slice(0, 10) + "T00:00:00Z")) / 86400000);
/* How long, in the largest sensible unit: 45分钟, 5小时, 12天, 3个月, 1年2个月. */
export function fmtDuration(ms) {
  const min = Math.max(0, Math.floor(ms / 60000));
  if (min < 60) return t("dur_min", { n: min });
  const hours = Math.floor(min / 60);
  if (hours < 48) return t("dur_hour", { n: hours });
  const days = Math.floor(hours / 24);
  if (days < 60) return t("dur_day", { n: days });
  const months = Math.floor(days / 30.44);
  if (months < 12) return t("dur_month", { n: months });
  const y = Math.floor(months / 12), m = months % 12;
  return m ? t("dur_year", { y, m }) : t("dur_year0", { y });
}
/* Whole days (warnings are judged per day): 12天, 3个月, 1年2个月. */
export const fmtDays = (days) => (days < 60 ? t("dur_day", { n: Math.max(0, days) }) : fmtDuration(days * 86400000));
export const sinceNow = (iso) => fmtDuration(Date.now() - new Date(iso).getTime());

// ------------------------------------------------------------------ the API
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
/* The human sentence of an error answer: RFC 9457 problem details (``detail``, else ``title``) or the
 * older shapes (``message``; ``detail`` as a string or as FastAPI's list of {loc, msg}). */
export function errorText(data, fallback) {
  if (!data || typeof data !== "object") return fallback;
  if (typeof data.detail === "string" && data.detail) return data.detail;
  if (typeof data.message === "string" && data.message) return data.message;
  if (Array.isArray(data.detail)) {
    const parts = data.detail.map((e) => (e && e.msg ? (e.loc ? `${[].concat(e.loc).join(".")}: ${e.msg}` : e.msg) : ""));
    if (parts.some(Boolean)) return parts.filter(Boolean).join("; ");
  }
  if (typeof data.title === "string" && data.title) return data.title;
  return fallback;
}
export async function api(path, opts) {
  opts = opts || {};
  const headers = { Accept: "application/json, application/problem+json" };
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
  if (!resp.ok) throw new ApiError(resp.status, errorText(data, resp.statusText || `HTTP ${resp.status}`));
  return data;
}
export function authFailure(err) {
  if (err && err.status === 401) { S.tokenState = "invalid"; return true; }
  if (err && err.status === 403) { S.tokenState = "forbidden"; return true; }
  return false;
}
/* The sentence of a failed action or lookup: ours for the statuses a user can act on, else the API's. */
export function actionError(err) {
  if (err && err.status === 503) return t("kafka_down");
  if (err && err.status === 401) return t("token_invalid");
  if (err && err.status === 403) return t("person_forbidden");
  return t("action_failed", { msg: (err && err.message) || "?" });
}
export function tokenMessage() {
  if (!S.token) return t("token_none");
  if (S.tokenState === "invalid") return t("token_invalid");
  if (S.tokenState === "forbidden") return t("token_forbidden");
  if (S.me && S.me.name) {
    const towns = (S.me.towns || []).map((x) => townName(x)).join("、");
    return t("token_me", { name: S.me.name, role: t("role_" + S.me.role), towns: towns ? ` · ${towns}` : "" });
  }
  return t("token_saved");
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
