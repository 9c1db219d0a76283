// The graph over time: uPlot (from npm, bundled by our build) on a canvas. The x axis is the bucket's
// position; its labels are the API's own time labels (site-local), so no client-side time zone maths.
import uPlot from "uplot";
import { h } from "./dom.js";
import { metric as show } from "./format.js";

const COUNT_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];

function short(label, bucket) {
  if (bucket === "hour") return label.slice(11, 16);
  if (bucket === "month") return label.slice(0, 7);
  return label.slice(5, 10);
}

export class Graph {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.plot = null;
    this.resize = () => this.plot && this.plot.setSize(this.size());
    window.addEventListener("resize", this.resize);
  }

  size() {
    return { width: Math.max(280, this.root.clientWidth), height: 240 };
  }

  /**
   * @param {string[]} labels every bucket of the range, in order
   * @param {number[]} values the metric per bucket (0 where nothing happened)
   * @param {string} metric @param {string} bucket
   */
  draw(labels, values, metric, bucket) {
    if (this.plot) this.plot.destroy();
    const xs = labels.map((_, i) => i);
    const opts = {
      ...this.size(),
      scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } },
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      series: [
        { value: (_u, i) => (i === null ? "" : labels[i]) },
        {
          label: metric,
          stroke: "#4338ca",
          fill: "rgba(67, 56, 202, 0.12)",
          width: 2,
          points: { show: labels.length <= 40 },
          value: (_u, v) => show(metric, v),
        },
      ],
      axes: [
        {
          stroke: "#6b7280",
          grid: { show: false },
          values: (_u, splits) => splits.map((i) => (Number.isInteger(i) && labels[i] ? short(labels[i], bucket) : "")),
        },
        {
          stroke: "#6b7280",
          grid: { stroke: "#eef0f3" },
          incrs: COUNT_STEPS, // whole numbers only: counts, per cents and seconds are integers
          values: (_u, splits) => splits.map((v) => show(metric, v)),
        },
      ],
    };
    this.plot = new uPlot(opts, [xs, values], this.root);
  }
}

/** The graph's figures as a table, for screen readers (and anyone who wants the numbers). */
export function dataTable(labels, values, metric) {
  return h(
    "table",
    { class: "graph-data" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, metric))),
    h(
      "tbody",
      {},
      labels.map((label, i) => h("tr", {}, h("td", {}, label), h("td", {}, show(metric, values[i])))),
    ),
  );
}
