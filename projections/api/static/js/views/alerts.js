/* The alerts inbox (风险隐患收件箱) with acknowledge / resolve, and the open-alerts summary card. */
import {
  $, ALERT_RULES, PAGE, RULE_SEVERITY, S, api, app, authFailure, fmtInt, fmtTime, h, name, shortId, t, td,
  toast, tokenMessage, townName,
} from "../core.js";
import { pager } from "./pager.js";

export async function loadAlerts() {
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
  renderSummary();
}

export function renderSummary() {
  const box = $("alert-summary");
  if (!S.summary) { box.replaceChildren(h("div", { class: "locked", text: "🔒 " + tokenMessage() })); return; }
  const max = Math.max(1, ...S.summary.map((s) => s.total));
  box.replaceChildren(...S.summary.map((s) => h("div", {
    class: "sum-row", "data-rule": s.rule, title: name("rule", s.rule),
    onclick: () => {
      S.alertRule = s.rule; S.alertOffset = 0; S.alertStatus = "open"; $("alert-status").value = "open";
      $("alert-rule").value = s.rule; S.dirtyAlerts = true; app.refresh();
      $("alerts-card").scrollIntoView({ behavior: "smooth" });
    },
  },
  h("span", { class: "sum-label", text: name("rule", s.rule) }),
  h("span", { class: "sum-bar" }, h("span", { class: "sev-bg-" + RULE_SEVERITY[s.rule], style: `width:${(100 * s.total / max).toFixed(1)}%` })),
  h("span", { class: "num", text: fmtInt(s.total) }))));
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

export function renderAlerts() {
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
    td(t("col_severity"), {}, h("span", { class: `sev sev-${a.severity}`, text: t("sev_" + a.severity) })),
    td(t("col_rule"), {}, h("div", { class: "cell-stack" },
      h("div", { class: "rule", text: name("rule", a.rule) }), h("div", { class: "detail", text: alertDetail(a) }))),
    td(t("col_person"), { class: "mono", title: a.person_id, text: shortId(a.person_id, 12) }),
    td(t("col_town"), { text: townName(a.town) }),
    td(t("col_detected"), { class: "nowrap", text: fmtTime(a.detected_at) }),
    td(t("col_events_ids"), { class: "mono ids" }, h("div", { class: "cell-stack" },
      ...(a.event_ids || []).map((id) => h("span", { class: "chip", title: id, text: shortId(id, 8) })))),
    td(t("col_status"), { class: "status-cell", "data-state": state }, h("div", { class: "cell-stack" },
      h("span", { class: "pill st-" + state, text: t("status_" + state) }),
      by ? h("div", { class: "by", text: by }) : null)),
    td(t("col_actions"), { class: "actions" },
      h("button", { type: "button", class: "btn small", "data-action": "acknowledge", disabled: state !== "open",
        text: t("ack"), onclick: (ev) => act(a, "acknowledge", ev.currentTarget) }),
      h("button", { type: "button", class: "btn small ghost", "data-action": "resolve", disabled: state === "resolved",
        text: t("resolve"), onclick: (ev) => act(a, "resolve", ev.currentTarget) })));
  }));
  pager($("alerts-pager"), S.alerts.total, S.alertOffset, (off) => { S.alertOffset = off; S.dirtyAlerts = true; app.refresh(); });
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
    app.refresh();
  } catch (err) {
    authFailure(err);
    toast(t("action_failed", { msg: err.message }), true);
    renderAlerts();
  }
}
