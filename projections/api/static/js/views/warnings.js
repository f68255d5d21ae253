/* Need warnings (需求预警) as of a date: the default date is the end of the chosen period. */
import { $, PAGE, S, api, app, authFailure, fmtInt, h, name, shortId, t, td, tokenMessage, townName } from "../core.js";
import { warnDate } from "../periods.js";
import { pager } from "./pager.js";

export async function loadWarnings() {
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
  renderWarnings();
}

function detail(w) {
  if (!w.need_id) return w.detail || "";
  return `${name("need", w.need || "", w.need || "")} ${w.need_id}`.trim() + (w.detail ? ` · ${w.detail}` : "");
}

export function renderWarnings() {
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
    td(t("col_rule"), {}, h("span", { class: "wrule wr-" + w.rule, text: name("rule", w.rule) })),
    td(t("col_person"), { class: "mono", title: w.person_id, text: shortId(w.person_id, 12) }),
    td(t("col_town"), { text: townName(w.town) }),
    td(t("col_since"), { class: "nowrap", text: w.since || "—" }),
    td(t("col_detail"), { class: "detail", text: detail(w) }))));
  pager($("warnings-pager"), S.warnings.total, S.warnOffset, (off) => { S.warnOffset = off; S.dirtyWarn = true; app.refresh(); });
}
