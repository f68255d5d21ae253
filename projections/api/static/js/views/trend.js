/* Monthly trend of the chosen kind and measure (12 months ending with the period), and its tabs. */
import { $, KINDS, S, app, fmtCompactWan, fmtInt, fmtWan, h, t } from "../core.js";

const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

export function measureOf(row) {
  if (!row) return 0;
  if (S.measure === "amount") return row.amount_fen || 0;
  if (S.measure === "persons") return row.persons || 0;
  return row.events || 0;
}
export const measureFmt = () => (S.measure === "amount" ? (v) => `${fmtWan(v)}` : fmtInt);

export function renderTrend() {
  const box = $("trend-chart");
  if (!S.trend) { box.textContent = t("loading"); return; }
  const byMonth = Object.fromEntries(S.trend.rows.map((r) => [r.month, r]));
  const p = S.trend.period;
  // as wide as its box (up to 640 units), so that labels keep their size on a phone
  const width = Math.round(Math.max(300, Math.min(640, box.clientWidth || 640)));
  const narrow = width < 480;
  const data = S.trend.months.map((m, i) => {
    const v = measureOf(byMonth[m]);
    const mm = +m.slice(5, 7);
    return {
      label: narrow ? String(mm) : S.lang === "en" ? MONTHS_EN[mm - 1] : `${mm}月`,
      sub: i === 0 || mm === 1 ? m.slice(0, 4) : "",
      value: v, strong: m >= p.from.slice(0, 7) && m <= p.to.slice(0, 7),
      line: S.measure === "events" && byMonth[m] ? byMonth[m].persons || 0 : 0,
      title: `${m} · ${t("kind_" + S.kind)} · ${t("measure_" + S.measure)}: ${measureFmt()(v)}` +
        (S.measure === "amount" ? " " + t("unit_wan") : "") +
        (S.measure === "events" && byMonth[m] ? ` · ${t("measure_persons")}: ${fmtInt(byMonth[m].persons)}` : ""),
    };
  });
  window.Charts.barChart(box, data, {
    width, height: narrow ? 240 : 260, valueLabels: !narrow,
    format: measureFmt(), tickFormat: S.measure === "amount" ? fmtCompactWan : (v) => fmtInt(v),
    empty: t("no_data"), label: `${t("by_month")} ${t("kind_" + S.kind)}`, line: S.measure === "events",
  });
  if (S.measure === "events") {
    box.appendChild(h("div", { class: "legend" },
      h("span", { class: "lg-bar" }), t("measure_events"), h("span", { class: "lg-line" }), t("measure_persons")));
  }
}

/* ``redraw``: what to draw again when only the measure changed (no new data needed). */
export function renderTabs(redraw) {
  $("kind-tabs").replaceChildren(...KINDS.map((k) => h("button", {
    type: "button", role: "tab", class: "tab" + (S.kind === k ? " active" : ""), "aria-selected": S.kind === k,
    "data-kind": k, text: t("kind_" + k),
    onclick: () => {
      S.kind = k;
      if (S.measure === "amount" && k !== "payment") S.measure = "events";
      renderTabs(redraw); S.dirtyAgg = true; app.refresh();
    },
  })));
  const measures = ["events", "persons"].concat(S.kind === "payment" ? ["amount"] : []);
  $("measure-tabs").replaceChildren(...measures.map((m) => h("button", {
    type: "button", role: "tab", class: "tab" + (S.measure === m ? " active" : ""), "aria-selected": S.measure === m,
    "data-measure": m, text: t("measure_" + m),
    onclick: () => { S.measure = m; renderTabs(redraw); redraw(); },
  })));
}
