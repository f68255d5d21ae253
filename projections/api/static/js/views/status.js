/* The stream's state: the live pill in the top bar and the status card (lag per projection). */
import { $, S, api, fmtInt, h, t } from "../core.js";

/* Ask /api/status; returns a fingerprint that changes whenever the stream moved. */
export async function loadStatus() {
  try {
    S.status = await api("/api/status");
    S.statusError = null;
    S.lastOk = Date.now();
  } catch (err) {
    S.status = null;
    S.statusError = err.status ? "kafka" : "api";
  }
  renderStatus();
  const s = S.status;
  return s ? JSON.stringify([s.lag, s.events_end_offsets, s.projections]) : "error:" + Date.now();
}

export function renderStatus() {
  const live = $("live"), text = $("live-text"), box = $("status");
  const time = new Date(S.lastOk || Date.now()).toLocaleTimeString(S.lang === "en" ? "en-GB" : "zh-CN", { hour12: false });
  if (S.status) {
    const lag = S.status.lag;
    live.dataset.state = lag === 0 ? "ok" : "lag";
    text.textContent = lag === 0 ? t("live_ok") : t("live_lag", { n: fmtInt(lag) });
  } else {
    live.dataset.state = "down";
    text.textContent = S.statusError === "api" ? t("live_api_down") : t("live_down");
  }
  live.title = t("updated", { t: time });
  const rows = [];
  if (S.status) {
    rows.push(h("div", { class: "stat-big" },
      h("span", { class: "stat-num", "data-testid": "lag", text: fmtInt(S.status.lag) }),
      h("span", { class: "stat-label", text: t("status_lag") }),
      h("span", { class: "pill " + (S.status.caught_up ? "ok" : "warn"),
        text: S.status.caught_up ? t("status_caught_up") : t("status_behind") })));
    for (const [proj, info] of Object.entries(S.status.projections || {})) {
      rows.push(h("div", { class: "stat-row" }, h("span", { text: `${t("status_projection")} ${proj}` }),
        h("span", { class: "num", text: fmtInt(info.lag) })));
    }
    const end = Object.values(S.status.events_end_offsets || {}).reduce((a, b) => a + b, 0);
    rows.push(h("div", { class: "stat-row" }, h("span", { text: t("status_offsets") }),
      h("span", { class: "num", text: fmtInt(end) })));
  } else {
    rows.push(h("div", { class: "stat-row bad", text: text.textContent }));
  }
  rows.push(h("div", { class: "stat-foot", text: `${t("updated", { t: time })} · ${S.sse === "open" ? t("sse_on") : t("sse_off")}` }));
  box.replaceChildren(...rows);
}

export function renderSseState() {
  const el = $("sse-state");
  el.textContent = S.sse === "open" ? "● " + t("sse_on") : "○ " + t("sse_off");
  el.className = "sse " + (S.sse === "open" ? "on" : "off");
}
