/* The headline figures above the report (from the report rows and the open alerts). */
import { $, S, fmtInt, fmtWan, h, t } from "../core.js";

export function renderKpis() {
  const box = $("kpis");
  const rows = (S.report && S.report.rows) || [];
  const sum = (pred, field) => rows.filter(pred).reduce((a, r) => a + (r[field] || 0), 0);
  const pick = (metric, field) => { const r = rows.find((x) => x.metric === metric); return r ? r[field] : null; };
  const openAlerts = S.alertSummary ? S.alertSummary.total : null;
  const shown = S.report ? `${S.report.from}..${S.report.to}` : "";
  if (shown !== S.kpiPeriod) { S.kpiPrev = {}; S.kpiPeriod = shown; }  // ▲ marks growth, not another period
  const kpis = [
    ["amount", t("kpi_amount"), S.report ? fmtWan(sum((r) => r.kind === "payment", "amount_fen")) : "—", t("unit_wan"),
      S.report ? sum((r) => r.kind === "payment", "amount_fen") : null],
    ["payments", t("kpi_payments"), fmtInt(S.report ? sum((r) => r.kind === "payment", "events") : null), t("unit_times"),
      S.report ? sum((r) => r.kind === "payment", "events") : null],
    ["services", t("kpi_services"), fmtInt(S.report ? sum((r) => r.kind === "service", "events") : null), t("unit_times"),
      S.report ? sum((r) => r.kind === "service", "events") : null],
    ["visits", t("kpi_visits"), fmtInt(pick("home_visit", "events")), t("unit_times"), pick("home_visit", "events")],
    ["jobs", t("kpi_jobs"), fmtInt(pick("new_employment", "persons")), t("unit_persons"), pick("new_employment", "persons")],
    ["alerts", t("kpi_alerts"), openAlerts === null ? "—" : fmtInt(openAlerts),
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
