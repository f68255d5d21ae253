/* The half-year report table (半年报表), laid out as the federation publishes it, and its CSV. */
import { $, NAMES, S, fmtInt, fmtWan, fmtYuan, h, name, t, td } from "../core.js";
import { period, periodName } from "../periods.js";

const LAYOUT = JSON.parse(document.getElementById("report-layout").textContent || "{}");

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
function cell(col, label, value, shown, formatter) {
  const node = td(label, { class: "num", "data-col": col });
  if (shown === null) {  // not applicable to this line (an amount of a non-payment line)
    node.dataset.value = "";
    node.classList.add("na");
  } else if (!shown) {
    node.textContent = "—";
    node.classList.add("muted");
    if (value !== null && value !== undefined) node.title = t("not_published", { v: formatter(value) });
    node.dataset.value = "";
  } else if (value === null || value === undefined) {
    node.textContent = "＊";
    node.title = t("suppressed");
    node.dataset.value = "";
  } else {
    node.textContent = formatter(value);
    node.dataset.value = String(value);
  }
  return node;
}

export function renderReport() {
  const body = $("report-table").tBodies[0];
  const p = S.report ? S.report.period : period();  // the rows' own period, not one still loading
  $("report-sub").textContent = t("report_sub", { from: p.from, to: p.to }) + (p.code !== "custom" ? ` · ${periodName(p.code)}` : "");
  if (!S.report) { body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "loading", text: t("loading") }))); return; }
  body.replaceChildren(...S.report.rows.map((row, i) => {
    const layout = LAYOUT[row.metric] || { persons: true, events: true, amount: row.kind === "payment" };
    const payment = row.kind === "payment";
    const note = reportNote(row);
    return h("tr", { "data-metric": row.metric, "data-kind": row.kind, class: "k-" + row.kind },
      td(t("col_no"), { class: "num muted seq", text: i + 1 }),
      td(t("col_item"), { class: "label", "data-col": "label", title: row.metric, text: reportLabel(row) }),
      cell("persons", t("col_persons"), row.persons, layout.persons, fmtInt),
      cell("events", t("col_events"), row.events, layout.events, fmtInt),
      cell("amount_wan", t("col_amount_wan"), row.amount_fen, payment ? layout.amount : null, fmtWan),
      cell("amount_yuan", t("col_amount_yuan"), row.amount_fen, payment ? layout.amount : null, fmtYuan),
      td(t("col_note"), { class: "note" + (note ? "" : " empty"), "data-col": "note", "data-positions": row.positions ?? "", text: note }));
  }));
}

export function reportCsv() {
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
