/* Previous / next page buttons under a list. */
import { PAGE, h, fmtInt, t } from "../core.js";

export function pager(box, total, offset, go) {
  if (total <= PAGE) { box.replaceChildren(); return; }
  const page = Math.floor(offset / PAGE) + 1, pages = Math.ceil(total / PAGE);
  box.replaceChildren(
    h("button", { type: "button", class: "btn small ghost", disabled: offset <= 0, text: t("prev"), onclick: () => go(Math.max(0, offset - PAGE)) }),
    h("span", { class: "page", text: `${page} / ${fmtInt(pages)}` }),
    h("button", { type: "button", class: "btn small ghost", disabled: offset + PAGE >= total, text: t("next"), onclick: () => go(offset + PAGE) }));
}
