/* 需求预警: the work queue as of a date (default today in Asia/Shanghai, as the API judges it):
 * summary per town × rule, then the list, longest overdue first, with the snooze action.
 * A town cell of the summary asks the API for that town's list (``town=``, within the caller's). */
import {
  $, PAGE, S, WARNING_RULES, api, app, authFailure, daysBetween, fmtDays, fmtInt, h, name, t, todayShanghai, townName,
} from "../core.js";
import { lockedText, townOptions } from "./alerts.js";
import { itemHead, warningItem } from "./items.js";
import { renderMatrix } from "./matrix.js";
import { pager } from "./pager.js";

export const warnDate = () => S.wq.asOf || todayShanghai();

/* The summary (the tab's badge, on every view now and then) and, on the warnings view, one page of the list. */
export async function loadWarnings() {
  if (!S.token || S.tokenState === "invalid" || S.tokenState === "forbidden") { S.warnSummary = null; S.warnList = null; renderWarnings(); return; }
  const asOf = warnDate();
  try {
    const summary = await api(`/api/warnings/summary?as_of=${asOf}`, { auth: true });
    let list = S.warnList;
    if (S.view === "warnings") {
      $("warnings-total").textContent = t("loading");
      list = await loadList(S.wq, summary, asOf);
    }
    S.tokenState = "ok";
    S.warnSummary = summary; S.warnList = list;
  } catch (err) {
    if (!authFailure(err)) throw err;
    S.warnSummary = null; S.warnList = null;
  }
  renderWarnings();
}

async function loadList(q, summary, asOf) {
  const url = `/api/warnings?as_of=${asOf}` + (q.rule ? `&rule=${encodeURIComponent(q.rule)}` : "") +
    (q.snoozed ? "&snoozed=true" : "") + (q.town ? `&town=${encodeURIComponent(q.town)}` : "");
  const page = await api(`${url}&limit=${PAGE}&offset=${q.offset}`, { auth: true });
  return { total: page.total, items: page.items, asOf };
}

export function renderWarnings() {
  renderBadge();
  const sum = S.warnSummary;
  const locked = $("warnings-locked");
  locked.hidden = Boolean(sum);
  $("warnings-card").hidden = !sum;
  $("warnings-date").value = warnDate();
  if (!sum) {
    locked.replaceChildren(h("div", { class: "locked lock", text: lockedText() }));
    $("warning-matrix").replaceChildren();
    $("warning-matrix-sub").textContent = "";
    return;
  }
  const q = S.wq;
  $("warning-matrix-sub").textContent = t("warning_matrix_sub", { d: sum.as_of, n: fmtInt(sum.total) });
  renderMatrix($("warning-matrix"), {
    rules: WARNING_RULES, rows: sum.rows, count: (r) => r.due + (q.snoozed ? r.snoozed : 0),
    subs: (r) => [
      r.due ? [t("m_oldest", { d: fmtDays(daysBetween(r.oldest_since, sum.as_of)) }), "age"] : null,
      r.snoozed ? [t("m_snoozed", { n: fmtInt(r.snoozed) }), ""] : null,
    ].filter(Boolean),
    pick: (rule, town) => app.go("warnings", Object.assign({}, q, { rule, town, offset: 0 }), true),
    selected: { rule: q.rule, town: q.town },
    empty: t("matrix_empty_warnings", { d: sum.as_of }),
  });
  renderFilters();
  renderList();
}

function renderFilters() {
  const q = S.wq;
  $("warning-rule").replaceChildren(h("option", { value: "", text: t("all_rules") }),
    ...WARNING_RULES.map((r) => h("option", { value: r, text: name("rule", r) })));
  $("warning-rule").value = q.rule;
  townOptions($("warning-town"), S.warnSummary ? S.warnSummary.rows.map((r) => r.town) : [], q.town);
  $("warning-snoozed").checked = q.snoozed;
}

function renderList() {
  const box = $("warnings-list");
  const list = S.warnList;
  const q = S.wq;
  const what = [q.rule ? name("rule", q.rule) : t("all_rules"), q.town ? townName(q.town) : t("all_towns")].join(" · ");
  $("warning-list-title").textContent = `${t("warning_list_title")} · ${what}`;
  if (!list) { box.replaceChildren(); $("warnings-total").textContent = ""; $("warnings-pager").replaceChildren(); return; }
  $("warnings-total").textContent = t("total", { n: fmtInt(list.total) });
  const redraw = (updated) => {
    const items = q.snoozed ? S.warnList.items.map((w) => (w.warning_id === updated.warning_id ? updated : w))
      : S.warnList.items.filter((w) => w.warning_id !== updated.warning_id);
    S.warnList = Object.assign({}, S.warnList, { items, total: S.warnList.total - (q.snoozed ? 0 : 1) });
    renderList();
  };
  box.replaceChildren(
    ...(list.items.length ? [itemHead(true, true)] : [h("div", { class: "locked empty", text: t("queue_empty") })]),
    ...list.items.map((w) => warningItem(w, list.asOf, redraw)));
  pager($("warnings-pager"), list.total, q.offset, (off) => { S.wq.offset = off; S.dirtyWarn = true; app.refresh(); });
}

function renderBadge() {
  const el = $("nav-warnings-count");
  el.textContent = S.warnSummary ? fmtInt(S.warnSummary.total) : "";
}
