/* 风险隐患: the work queue (summary per town × rule, then the list in queue order) and the open-alerts
 * card of the overview.
 *
 * The API answers only the persons of a caseworker's towns (admins: all), with names; a town cell
 * of the summary asks for that town's list (``town=``, within the caller's).
 */
import {
  $, ALERT_RULES, PAGE, RULE_SEVERITY, S, api, app, authFailure, fmtInt, h, name, sinceNow, t, tokenMessage, townName, townOrder,
} from "../core.js";
import { rememberAssignees } from "./actions.js";
import { alertItem, itemHead } from "./items.js";
import { renderMatrix } from "./matrix.js";
import { pager } from "./pager.js";


/* Read the open-alerts summary (every pass: the overview card, the KPI and the tab's badge) and,
 * on the alerts view, the queue's summary and one page of its list. */
export async function loadAlerts() {
  if (!S.token || S.tokenState === "invalid" || S.tokenState === "forbidden") { clear(); return; }
  try {
    const q = S.aq;
    const open = await api("/api/alerts/summary?status=open", { auth: true });
    S.tokenState = "ok";
    S.alertSummary = open;
    if (S.view === "alerts") {
      const summary = q.status === "open" ? open : await api(`/api/alerts/summary?status=${q.status}`, { auth: true });
      const list = await loadList(q);
      S.alertMatrix = summary;
      const key = JSON.stringify([list, S.lang]);
      if (key !== S.alertsKey) {
        const ids = list.items.map((a) => a.alert_id);
        if (S.seenAlerts !== null) for (const id of ids) if (!S.seenAlerts.has(id)) S.freshAlerts.add(id);
        S.seenAlerts = S.seenAlerts || new Set();
        for (const id of ids) S.seenAlerts.add(id);
        S.alertList = list; S.alertsKey = key;
        rememberAssignees(list.items);
        renderAlertList();
      }
      renderAlertMatrix();
    }
  } catch (err) {
    if (!authFailure(err)) throw err;
    clear();
  }
  renderSummary();
}

function clear() {
  S.alertSummary = null; S.alertMatrix = null; S.alertList = null; S.alertsKey = "";
  renderAlertMatrix(); renderAlertList(); renderSummary();
}

function listUrl(q) {
  return `/api/alerts?sort=${q.sort}&status=${q.status}` + (q.rule ? `&rule=${encodeURIComponent(q.rule)}` : "") +
    (q.escalated ? "&escalated=true" : "") + (q.town ? `&town=${encodeURIComponent(q.town)}` : "");
}

async function loadList(q) {
  const page = await api(`${listUrl(q)}&limit=${PAGE}&offset=${q.offset}`, { auth: true });
  return { total: page.total, items: page.items };
}

// ------------------------------------------------------------------ the overview's card
export function renderSummary() {
  const box = $("alert-summary");
  $("nav-alerts-count").textContent = S.alertSummary ? fmtInt(S.alertSummary.total) : "";
  if (!S.alertSummary) { box.replaceChildren(h("div", { class: "locked lock", text: lockedText() })); return; }
  const totals = ALERT_RULES.map((rule) => ({ rule, total: S.alertSummary.rows.filter((r) => r.rule === rule).reduce((a, r) => a + r.count, 0) }));
  const max = Math.max(1, ...totals.map((s) => s.total));
  box.replaceChildren(...totals.map((s) => h("a", {
    class: "sum-row", "data-rule": s.rule, title: name("rule", s.rule), href: `#/alerts?rule=${s.rule}`,
  },
  h("span", { class: "sum-label", text: name("rule", s.rule) }),
  h("span", { class: "sum-bar" }, h("span", { class: "sev-bg-" + RULE_SEVERITY[s.rule], style: `width:${(100 * s.total / max).toFixed(1)}%` })),
  h("span", { class: "num", text: fmtInt(s.total) }))));
}

export function lockedText() {
  return S.tokenState === "forbidden" ? t("locked_person_level") : tokenMessage();
}

// ------------------------------------------------------------------ the queue
export function renderAlertMatrix() {
  const locked = $("alerts-locked"), table = $("alert-matrix");
  const sum = S.alertMatrix;
  locked.hidden = Boolean(sum);
  $("alerts-card").hidden = !sum;
  if (!sum) {
    locked.replaceChildren(h("div", { class: "locked lock", text: lockedText() }));
    table.replaceChildren();
    $("alert-matrix-sub").textContent = "";
    return;
  }
  $("alert-matrix-sub").textContent = t("alert_matrix_sub", { n: fmtInt(sum.total) });
  renderMatrix(table, {
    rules: ALERT_RULES, rows: sum.rows, count: (r) => r.count,
    subs: (r) => [
      r.critical ? [t("m_critical", { n: fmtInt(r.critical) }), "crit"] : null,
      r.escalated ? [t("m_escalated", { n: fmtInt(r.escalated) }), "esc"] : null,
      r.unacknowledged && sum.status === "open" ? [t("m_unacked", { n: fmtInt(r.unacknowledged) }), ""] : null,
      r.oldest_detected_at && sum.status === "open" ? [t("m_oldest", { d: sinceNow(r.oldest_detected_at) }), "age"] : null,
    ].filter(Boolean),
    pick: (rule, town) => app.go("alerts", Object.assign({}, S.aq, { rule, town, offset: 0 }), true),
    selected: { rule: S.aq.rule, town: S.aq.town },
    empty: t(sum.status === "open" ? "matrix_empty_open" : "matrix_empty_resolved"),
  });
  renderAlertFilters();
}

export function renderAlertList() {
  const box = $("alerts-list");
  const list = S.alertList;
  const q = S.aq;
  const what = [q.rule ? name("rule", q.rule) : t("all_rules"), q.town ? townName(q.town) : t("all_towns"),
    t("status_" + q.status)].join(" · ");
  $("alert-list-title").textContent = `${t("alert_list_title")} · ${what}`;
  if (!list) {
    box.replaceChildren();
    $("alerts-total").textContent = "";
    $("alerts-pager").replaceChildren();
    return;
  }
  $("alerts-total").textContent = t("total", { n: fmtInt(list.total) });
  const redraw = (updated) => {
    S.alertList = Object.assign({}, S.alertList, {
      items: S.alertList.items.map((a) => (a.alert_id === updated.alert_id ? Object.assign({}, a, updated) : a)) });
    S.alertsKey = "";
    renderAlertList();
  };
  box.replaceChildren(
    ...(list.items.length ? [itemHead(true)] : [h("div", { class: "locked empty", text: t("queue_empty") })]),
    ...list.items.map((a) => alertItem(a, redraw, { fresh: S.freshAlerts.has(a.alert_id) })));
  pager($("alerts-pager"), list.total, q.offset, (off) => { S.aq.offset = off; S.dirtyAlerts = true; app.refresh(); });
  if (S.freshAlerts.size) setTimeout(() => S.freshAlerts.clear(), 6000);
}

/* The filter controls follow the address (#/alerts?rule=..&town=..). */
export function renderAlertFilters() {
  const q = S.aq;
  $("alert-status").value = q.status;
  $("alert-rule").replaceChildren(h("option", { value: "", text: t("all_rules") }),
    ...ALERT_RULES.map((r) => h("option", { value: r, text: name("rule", r) })));
  $("alert-rule").value = q.rule;
  const towns = S.alertMatrix ? S.alertMatrix.rows.map((r) => r.town) : [];
  townOptions($("alert-town"), towns, q.town);
  $("alert-sort").value = q.sort;
  $("alert-escalated").checked = q.escalated;
}

export function townOptions(select, towns, current) {
  const all = townOrder([...towns, ...(current ? [current] : [])]);
  select.replaceChildren(h("option", { value: "", text: t("all_towns") }),
    ...all.map((tn) => h("option", { value: tn, text: townName(tn) })));
  select.value = current;
}
