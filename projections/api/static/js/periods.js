/* The period selector: only half-years and years that hold data, newest first, and the date range
 * every view reads (period()).  Which months hold data is asked of /api/counts/grouped?group_by=month
 * for the activity kinds (registrations alone go back to 2008 and would offer a report of zeros). */
import { $, S, api, h, pad, t, todayIso } from "./core.js";

const ACTIVITY_KINDS = ["payment", "service", "visit", "job", "need", "posting"];

export function periodRange(code) {
  const m = /^(\d{4})(H[12])?$/.exec(code || "");
  if (!m) return null;
  const y = +m[1];
  if (m[2] === "H1") return { from: `${y}-01-01`, to: `${y}-06-30` };
  if (m[2] === "H2") return { from: `${y}-07-01`, to: `${y}-12-31` };
  return { from: `${y}-01-01`, to: `${y}-12-31` };
}
export function periodName(code) {
  const m = /^(\d{4})(H[12])?$/.exec(code || "");
  if (!m) return code || "";
  return t(m[2] === "H1" ? "half1" : m[2] === "H2" ? "half2" : "year", { y: m[1] });
}
/* The newest half-year with data (this half-year before anything is known). */
function autoCode() {
  const half = (S.periods || []).find((code) => code.includes("H"));
  if (half) return half;
  const month = todayIso().slice(0, 7);
  return `${month.slice(0, 4)}H${+month.slice(5, 7) <= 6 ? 1 : 2}`;
}
export function period() {
  if (S.period === "custom" && S.custom.from && S.custom.to) {
    return { code: "custom", from: S.custom.from, to: S.custom.to };
  }
  const code = S.period === "auto" || S.period === "custom" ? autoCode() : S.period;
  return Object.assign({ code }, periodRange(code));
}
/* The 12 months ending with the period's last month. */
export function trendMonths(p) {
  const y = +p.to.slice(0, 4), m = +p.to.slice(5, 7);
  const out = [];
  for (let i = 11; i >= 0; i--) {
    let yy = y, mm = m - i;
    while (mm <= 0) { mm += 12; yy -= 1; }
    out.push(`${yy}-${pad(mm)}`);
  }
  return out;
}

/* Half-years and years (newest first) of the months given. */
export function periodsOf(months) {
  const codes = new Set();
  for (const month of months) {
    const y = month.slice(0, 4);
    codes.add(`${y}H${+month.slice(5, 7) <= 6 ? 1 : 2}`);
    codes.add(y);
  }
  const rank = (code) => code.slice(0, 4) + (code.length === 4 ? "0" : code.slice(5) === "2" ? "2" : "1");
  return [...codes].sort((a, b) => (rank(a) < rank(b) ? 1 : -1));
}

/* Ask which months hold data when the last answer is older than ``maxAgeMs``; true if the list changed. */
export async function loadPeriods(maxAgeMs) {
  if (S.periods && S.periods.length && Date.now() - S.lastPeriods < maxAgeMs) return false;
  const answers = await Promise.all(ACTIVITY_KINDS.map((kind) => api(`/api/counts/grouped?kind=${kind}&group_by=month`)));
  const months = new Set();
  for (const answer of answers) {
    for (const row of answer.rows) if ((row.events || 0) > 0 || (row.positions || 0) > 0 || row.suppressed) months.add(row.month);
  }
  S.lastPeriods = Date.now();
  const periods = periodsOf([...months]);
  const changed = JSON.stringify(periods) !== JSON.stringify(S.periods);
  S.periods = periods;
  if (changed) {
    if (S.period !== "auto" && S.period !== "custom" && !periods.includes(S.period)) S.period = "auto";
    renderPeriodOptions();
  }
  return changed;
}

export function renderPeriodOptions() {
  const sel = $("period");
  const known = S.periods || [];
  const opts = [["auto", known.length ? `${t("period_auto")} · ${periodName(autoCode())}`
    : `${t("period_auto")} · ${S.periods ? t("no_data") : t("loading")}`]];
  for (const code of known) opts.push([code, periodName(code)]);
  opts.push(["custom", t("period_custom")]);
  sel.replaceChildren(...opts.map(([v, label]) => h("option", { value: v, text: label })));
  sel.value = S.period;
  $("custom-range").hidden = S.period !== "custom";
}
