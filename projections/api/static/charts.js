/* careledger dashboard: small hand-written SVG charts (no library, no network). */
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const node = el("text", Object.assign({ x, y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  /* 1, 2, 2.5, 5 x 10^k ticks covering [0, max]. */
  function niceTicks(max, count) {
    if (!(max > 0)) return [0, 1];
    const raw = max / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const ticks = [];
    for (let v = 0; v <= max + step * 0.999; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
    return ticks;
  }

  /* Vertical bars with a y axis.  data: [{label, sub, value, title, strong}]. */
  function barChart(container, data, opts) {
    opts = opts || {};
    const fmt = opts.format || ((v) => String(v));
    const W = opts.width || 640, H = opts.height || 260;
    const m = { top: 22, right: 12, bottom: 40, left: 58 };
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
      "aria-label": opts.label || "" });
    const iw = W - m.left - m.right, ih = H - m.top - m.bottom;
    const max = Math.max(0, ...data.map((d) => d.value || 0));
    const ticks = niceTicks(max, 4);
    const top = ticks[ticks.length - 1] || 1;
    const y = (v) => m.top + ih - (v / top) * ih;
    const grid = el("g", { class: "grid" }, svg);
    for (const t of ticks) {
      el("line", { x1: m.left, x2: W - m.right, y1: y(t), y2: y(t) }, grid);
      text(grid, m.left - 8, y(t) + 4, (opts.tickFormat || fmt)(t), { "text-anchor": "end", class: "tick" });
    }
    const n = Math.max(1, data.length);
    const band = iw / n, bw = Math.max(4, Math.min(44, band * 0.68));
    const bars = el("g", { class: "bars" }, svg);
    data.forEach((d, i) => {
      const cx = m.left + band * i + band / 2;
      const v = d.value || 0;
      const h = Math.max(v > 0 ? 1 : 0, m.top + ih - y(v));
      const g = el("g", { class: "bar" + (d.strong ? " strong" : "") }, bars);
      el("rect", { x: cx - bw / 2, y: m.top + ih - h, width: bw, height: h, rx: 3 }, g);
      const tip = el("title", {}, g);
      tip.textContent = d.title || `${d.label}: ${fmt(v)}`;
      if (opts.valueLabels !== false && n <= 14 && v > 0) {
        text(g, cx, m.top + ih - h - 6, fmt(v), { "text-anchor": "middle", class: "value" });
      }
      text(svg, cx, H - m.bottom + 16, d.label, { "text-anchor": "middle", class: "xlabel" });
      if (d.sub) text(svg, cx, H - m.bottom + 31, d.sub, { "text-anchor": "middle", class: "xsub" });
    });
    el("line", { x1: m.left, x2: W - m.right, y1: m.top + ih, y2: m.top + ih, class: "axis" }, svg);
    if (opts.line) {  // optional second series drawn as a line over the bars (same scale)
      const pts = data.map((d, i) => [m.left + band * i + band / 2, y(d.line || 0)]);
      el("polyline", { points: pts.map((p) => p.join(",")).join(" "), class: "line" }, svg);
      pts.forEach((p) => el("circle", { cx: p[0], cy: p[1], r: 3, class: "dot" }, svg));
    }
    container.replaceChildren(svg);
    if (!data.length || max === 0) {
      const empty = document.createElement("div");
      empty.className = "empty-chart";
      empty.textContent = opts.empty || "—";
      container.appendChild(empty);
    }
    return svg;
  }

  /* A progress bar: a rounded track and a fill, with the percentage drawn inside. */
  function progress(value) {
    const pct = Math.max(0, Math.min(1, value || 0));
    const svg = el("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none", class: "progress" });
    el("rect", { x: 0, y: 0, width: 100, height: 10, rx: 5, class: "track" }, svg);
    el("rect", { x: 0, y: 0, width: Math.max(pct > 0 ? 2 : 0, pct * 100), height: 10, rx: 5,
      class: "fill" + (value >= 1 ? " done" : "") }, svg);
    return svg;
  }

  /* Heat colour from light to deep teal for t in [0, 1]. */
  function heat(t) {
    t = Math.max(0, Math.min(1, t || 0));
    const a = [232, 244, 243], b = [15, 110, 110];
    const c = a.map((v, i) => Math.round(v + (b[i] - v) * Math.pow(t, 0.8)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  window.Charts = { barChart, progress, heat, niceTicks };
})();
