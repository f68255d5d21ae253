/* A work queue at a glance: towns (rows) × rules (columns), each cell a button to the list of that
 * rule and town.  Shared by the alerts and the warnings queues; on a phone every town is a card
 * whose lines are the rules (dashboard.css: table.matrix.stack). */
import { fmtInt, h, name, t, townName, townOrder } from "../core.js";

/* ``rows``: the summary's rows ({rule, town, ...}); ``count(row)``: its number; ``subs(row)``: the
 * small lines under it; ``pick(rule, town)``: open the list ("" = any); ``selected``: {rule, town}. */
export function renderMatrix(table, { rules, rows, count, subs, pick, selected, empty }) {
  if (!rows.length) {
    table.replaceChildren(h("tbody", {}, h("tr", {}, h("td", { class: "locked empty", text: empty }))));
    return;
  }
  const towns = townOrder(rows.map((r) => r.town));
  const at = new Map(rows.map((r) => [`${r.rule}\u0000${r.town}`, r]));
  const sum = (pred) => rows.filter(pred).reduce((a, r) => a + count(r), 0);
  const isSel = (rule, town) => selected && selected.rule === rule && selected.town === town;
  const button = (n, rule, town, extra) => h("button", {
    type: "button", class: "mcell" + (isSel(rule, town) ? " selected" : ""), "data-rule": rule, "data-town": town,
    disabled: n === 0, onclick: () => pick(rule, town),
  }, h("span", { class: "mc-count", text: fmtInt(n) }), ...(extra || []));
  const head = h("thead", {}, h("tr", {},
    h("th", { text: t("col_town") }),
    ...rules.map((r) => h("th", { class: "num", text: name("rule", r) })),
    h("th", { class: "num", text: t("col_total") })));
  const body = h("tbody", {}, ...towns.map((town) => h("tr", { "data-town": town },
    h("td", { class: "m-town", "data-label": t("col_town") },
      h("button", { type: "button", class: "linkish", onclick: () => pick("", town), text: townName(town) })),
    ...rules.map((rule) => {
      const row = at.get(`${rule}\u0000${town}`);
      const n = row ? count(row) : 0;
      return h("td", { class: "num m-cell", "data-label": name("rule", rule) },
        row && (n > 0 || subs(row).length) ? button(n, rule, town, [h("span", { class: "mc-subs" },
          ...subs(row).map(([text, cls]) => h("span", { class: "mc-sub " + (cls || ""), text })))])
          : h("span", { class: "mc-none", text: "—" }));
    }),
    h("td", { class: "num m-total", "data-label": t("col_total") },
      button(sum((r) => r.town === town), "", town)))));
  const foot = h("tfoot", {}, h("tr", { class: "m-sum" },
    h("td", { class: "m-town", "data-label": "", text: t("col_total") }),
    ...rules.map((rule) => h("td", { class: "num", "data-label": name("rule", rule) },
      button(sum((r) => r.rule === rule), rule, ""))),
    h("td", { class: "num m-total", "data-label": t("col_total") }, button(sum(() => true), "", ""))));
  table.replaceChildren(head, body, ...(towns.length > 1 ? [foot] : []));  // one town: its row is the total
}
