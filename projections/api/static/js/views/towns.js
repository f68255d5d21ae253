/* The twelve towns/streets of the district laid out roughly as on the map, shaded by the measure. */
import { $, S, h, t, townName } from "../core.js";
import { measureFmt, measureOf } from "./trend.js";

const TOWN_GRID = [
  [null, "萧王庙街道", "江口街道", "方桥街道", null],
  ["溪口镇", "锦屏街道", "岳林街道", "西坞街道", null],
  ["大堰镇", "尚田街道", "莼湖镇", "裘村镇", "松岙镇"],
];

export function renderTowns() {
  const box = $("town-grid");
  if (!S.towns) { box.textContent = t("loading"); return; }
  const byTown = Object.fromEntries(S.towns.map((r) => [r.town, r]));
  const known = new Set(TOWN_GRID.flat().filter(Boolean));
  const extra = S.towns.map((r) => r.town).filter((tn) => !known.has(tn));
  const grid = TOWN_GRID.map((row) => row.slice());
  for (let i = 0; i < extra.length; i += 5) grid.push(extra.slice(i, i + 5));
  const values = S.towns.map(measureOf);
  const max = Math.max(0, ...values), total = values.reduce((a, b) => a + b, 0);
  const fmt = measureFmt();
  const tiles = [];
  for (const row of grid) {
    for (let c = 0; c < 5; c++) {
      const town = row[c];
      if (!town) { tiles.push(h("div", { class: "tile void" })); continue; }
      const v = measureOf(byTown[town]);
      const ratio = max > 0 ? v / max : 0;
      const share = total > 0 ? `${(100 * v / total).toFixed(1)}%` : "—";
      tiles.push(h("div", {
        class: "tile" + (ratio > 0.55 ? " dark" : ""), "data-town": town, style: `background:${window.Charts.heat(ratio)}`,
        title: `${town} · ${t("kind_" + S.kind)} · ${t("measure_" + S.measure)}: ${fmt(v)} (${share})`,
      },
      h("div", { class: "tile-name", text: townName(town) }),
      h("div", { class: "tile-value", text: fmt(v) }),
      h("div", { class: "tile-share", text: t("share", { p: share }) })));
    }
  }
  box.replaceChildren(...tiles);
}
