/* Target progress (目标进度) for the chosen period.
 *
 * The targets are the federation's file (careledger/targets.csv, /api/targets), each for its own
 * period (2024H2, 2024, ...).  A target counts for the chosen period when the two overlap; its
 * progress is then counted from the target's first day to the end of the chosen period (or of the
 * target, whichever is first) with /api/counts: a year's target seen from its first half shows the
 * year so far.  A target of another period is listed as "no target for this period", never as 0 %. */
import { $, S, api, fmtInt, h, name, t } from "../core.js";
import { period, periodName } from "../periods.js";

export async function loadTargets() {
  const p = period();
  const all = (await api("/api/targets")).items;
  S.targets = {
    period: p,
    items: await Promise.all(all.map(async (tg) => {
      if (tg.to < p.from || tg.from > p.to) return Object.assign({}, tg, { applies: false });
      const until = tg.to < p.to ? tg.to : p.to;
      const q = `kind=${tg.kind}${tg.key ? `&key=${encodeURIComponent(tg.key)}` : ""}&from=${tg.from}&to=${until}`;
      const counts = await api(`/api/counts?${q}`);
      const current = tg.measure === "positions" ? counts.positions : counts.persons;
      return Object.assign({}, tg, {
        applies: true, until, partial: until < tg.to, current, suppressed: Boolean(counts.suppressed),
        progress: current === null || current === undefined || !tg.target ? null : current / tg.target,
      });
    })),
  };
}

export function renderTargets() {
  const box = $("targets");
  if (!S.targets) { box.textContent = t("loading"); return; }
  const { items } = S.targets;
  const label = (tg) => (S.lang === "en" ? name("metric", tg.metric, tg.label_zh) : tg.label_zh);
  const applying = items.filter((tg) => tg.applies), others = items.filter((tg) => !tg.applies);
  const rows = [];
  if (!applying.length) {
    const p = S.targets.period;
    rows.push(h("div", { class: "target-none-all", "data-testid": "no-targets",
      text: t("targets_none", { p: p.code === "custom" ? `${p.from} – ${p.to}` : periodName(p.code) }) }));
  }
  for (const tg of applying) {
    const unit = tg.measure === "positions" ? t("unit_positions") : t("unit_persons");
    const pct = tg.progress === null ? "＊" : `${Math.round(tg.progress * 100)}%`;
    rows.push(h("div", { class: "target", "data-metric": tg.metric, "data-progress": tg.progress ?? "" },
      h("div", { class: "target-head" }, h("span", { class: "target-label", text: label(tg) }),
        h("span", { class: "target-period", text: periodName(tg.period) })),
      window.Charts.progress(tg.progress),
      h("div", { class: "target-foot" },
        h("span", { text: t("target_of", { cur: fmtInt(tg.current), target: fmtInt(tg.target), unit }) +
          (tg.partial ? ` · ${t("target_until", { d: tg.until })}` : "") }),
        h("strong", { title: tg.suppressed ? t("suppressed") : null, text: pct }))));
  }
  for (const tg of others) {
    rows.push(h("div", { class: "target none", "data-metric": tg.metric },
      h("span", { class: "target-label", text: label(tg) }),
      h("span", { class: "target-period", text: t("target_other", { p: periodName(tg.period) }) })));
  }
  box.replaceChildren(...rows);
}
