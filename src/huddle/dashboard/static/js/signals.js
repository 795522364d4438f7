// Conflict signals over the last 24 h as small hand-drawn SVG charts (no chart library):
// how often each scoring layer fired on an announce, and how consultations ended.
// Also the hot-files list. Colours come from CSS classes, so dark mode restyles them.

import { call } from "./api.js";
import { byId, clear, fill, h, svg } from "./dom.js";

const LAYER_NAMES = {
  "0a": "same file",
  "0b": "my dependency targeted",
  "0c": "my target depended on",
  "1": "recent edit",
  "2": "recent dependency edit",
  "3": "same module",
  "4": "co-change",
  "5": "git operation",
  L: "lease held",
};
const OUTCOMES = [
  ["agreed", "agreed"],
  ["auto_resolved", "auto-resolved"],
  ["timed_out", "timed out"],
];

function stackedBars(series, starts, { title }) {
  const width = 480;
  const height = 110;
  const pad = { left: 26, right: 6, top: 8, bottom: 18 };
  const n = starts.length;
  const totals = starts.map((_, i) => series.reduce((sum, s) => sum + s.values[i], 0));
  const max = Math.max(1, ...totals);
  const slot = (width - pad.left - pad.right) / n;
  const bar = Math.max(2, slot * 0.72);
  const scale = (height - pad.top - pad.bottom) / max;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  chart.append(svg("title", { text: title }));
  for (const y of [0, max]) {
    const py = height - pad.bottom - y * scale;
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: py, y2: py, class: "grid-line" }));
    chart.append(svg("text", { x: pad.left - 4, y: py + 3, class: "axis", "text-anchor": "end", text: String(y) }));
  }
  for (let i = 0; i < n; i += 1) {
    let base = height - pad.bottom;
    const x = pad.left + i * slot + (slot - bar) / 2;
    for (const s of series) {
      const value = s.values[i];
      if (!value) continue;
      const hgt = value * scale;
      base -= hgt;
      const rect = svg("rect", { x: x.toFixed(1), y: base.toFixed(1), width: bar.toFixed(1), height: hgt.toFixed(1), rx: 1.5, class: `bar ${s.cls}` });
      const hour = new Date(starts[i]).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
      rect.append(svg("title", { text: `${hour}: ${value} ${s.label}` }));
      chart.append(rect);
    }
    if (i % 6 === 0 || i === n - 1) {
      const label = new Date(starts[i]).toLocaleTimeString([], { hour: "2-digit", hour12: false });
      chart.append(svg("text", { x: (x + bar / 2).toFixed(1), y: height - 4, class: "axis", "text-anchor": "middle", text: label }));
    }
  }
  return chart;
}

function legend(series) {
  return h(
    "ul",
    { class: "legend" },
    series.map((s) => h("li", { title: s.title || s.label }, h("span", { class: `swatch ${s.cls}` }), h("span", { text: s.label }), h("strong", { text: String(s.total) }))),
  );
}

export class SignalsPanel {
  constructor() {
    this.box = byId("signals");
  }

  async refresh() {
    const data = await call("conflict_signals", { hours: 24 });
    this.render(data);
  }

  render(data) {
    const layerSeries = Object.entries(data.layers).map(([layer, values]) => ({
      key: layer,
      cls: `l-${layer}`,
      label: `L${layer}`,
      title: `layer ${layer}: ${LAYER_NAMES[layer] || layer}`,
      values,
      total: data.layer_totals[layer],
    }));
    const outcomeSeries = OUTCOMES.map(([key, label]) => ({ key, cls: `o-${key}`, label, values: data.outcomes[key], total: data.outcome_totals[key] }));
    const verdicts = Object.fromEntries(Object.entries(data.verdicts).map(([k, v]) => [k, v.reduce((a, b) => a + b, 0)]));
    fill(
      this.box,
      h(
        "div",
        { class: "kpis" },
        ["proceed", "caution", "consult"].map((v) => h("div", { class: `kpi v-${v}` }, h("strong", { text: String(verdicts[v] || 0) }), h("span", { text: v }))),
      ),
      h("h4", { text: "Layers fired" }),
      layerSeries.length ? stackedBars(layerSeries, data.bucket_starts, { title: "Scoring layers fired per hour" }) : h("p", { class: "empty small", text: "No overlaps scored in the last 24 h." }),
      layerSeries.length ? legend(layerSeries) : null,
      h("h4", { text: "Consensus outcomes" }),
      stackedBars(outcomeSeries, data.bucket_starts, { title: "Consultation outcomes per hour" }),
      legend(outcomeSeries),
    );
  }
}

export class HotFiles {
  constructor() {
    this.list = byId("hot-list");
  }

  async refresh() {
    const data = await call("hot_files", { limit: 10 });
    clear(this.list);
    if (!data.files.length) {
      this.list.append(h("li", { class: "empty", text: "No recent edits." }));
      return;
    }
    const max = Math.max(...data.files.map((f) => f.edits));
    for (const file of data.files) {
      // Set through the CSSOM: the page's CSP forbids inline style attributes.
      const fill = h("span");
      fill.style.width = `${Math.round((100 * file.edits) / max)}%`;
      const agents = file.agents.length;
      this.list.append(
        h(
          "li",
          { class: `hot${file.contested ? " contested" : ""}`, dataset: { path: file.path } },
          h("div", { class: "line" }, h("span", { class: "mono path", text: file.path }), file.contested ? h("span", { class: "tag t-consult", text: "contested" }) : null),
          h("div", { class: "meter" }, fill),
          h("div", { class: "small muted", text: `${file.edits} edit${file.edits === 1 ? "" : "s"} by ${file.agents.join(", ")}${agents > 1 ? ` (${agents} agents)` : ""}` }),
        ),
      );
    }
  }
}
