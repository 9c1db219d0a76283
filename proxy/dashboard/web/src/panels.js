// A breakdown panel: tabs (one dimension each), the rows the API answered (clicking one filters the whole
// page), the suppression the API applied (how many rows were folded into "(other)" or withheld), and a
// CSV button that asks the API for the same breakdown as CSV.
import { download } from "./api.js";
import { fill, h } from "./dom.js";
import { label, metric as show, METRIC_NAMES } from "./format.js";

export const OTHER = "(other)";
const ROWS_SHOWN = 100;

/**
 * @typedef {{id: string, label: string, dimension: (state: any) => string | null, metrics: string[],
 *   filters?: any[], empty?: string}} Tab
 */

export class ListPanel {
  /**
   * @param {{id: string, title: string, tabs: Tab[], api: import("./api.js").Api,
   *   onFilter: (dimension: string, value: string) => void, onError: (e: any) => void,
   *   fileName: (tab: string) => string, extra?: HTMLElement}} options
   */
  constructor(options) {
    Object.assign(this, options);
    this.tab = this.tabs[0];
    this.ctx = null;
    this.tabBar = h(
      "div",
      { class: "tabs", role: "tablist" },
      this.tabs.length > 1
        ? this.tabs.map((tab) =>
            h(
              "button",
              {
                type: "button",
                role: "tab",
                class: "tab",
                "data-tab": tab.id,
                "aria-selected": String(tab === this.tab),
                onclick: () => this.select(tab),
              },
              tab.label,
            ),
          )
        : [],
    );
    this.csvButton = h(
      "button",
      { type: "button", class: "csv", title: "Download this breakdown as CSV", onclick: () => this.downloadCsv() },
      "CSV",
    );
    this.list = h("div", { class: "rows" });
    this.note = h("p", { class: "suppression", hidden: true });
    this.element = h(
      "section",
      { class: "panel", id: `panel-${this.id}`, "data-panel": this.id },
      h("header", { class: "panel-head" }, h("h2", {}, this.title), this.tabBar, this.csvButton),
      this.extra || null,
      this.list,
      this.note,
    );
  }

  select(tab) {
    this.tab = tab;
    for (const b of this.tabBar.querySelectorAll(".tab")) b.setAttribute("aria-selected", String(b.dataset.tab === tab.id));
    if (this.ctx) this.load(this.ctx).catch(this.onError);
  }

  body(ctx, limit) {
    const dimension = this.tab.dimension(ctx.state);
    if (!dimension) return null;
    const body = {
      metrics: this.tab.metrics,
      date_range: ctx.range,
      dimensions: [dimension],
      filters: [...ctx.filters, ...(this.tab.filters || [])],
    };
    if (limit) {
      body.include = { total_rows: true };
      body.pagination = { limit };
    }
    return body;
  }

  /** Ask the API for this tab's breakdown and show it (unless a newer load has started meanwhile). */
  async load(ctx) {
    this.ctx = ctx;
    const body = this.body(ctx, ROWS_SHOWN);
    this.element.dataset.state = "loading";
    if (!body) {
      fill(this.list, h("p", { class: "empty" }, this.tab.empty || "Nothing to show."));
      this.note.hidden = true;
      this.csvButton.disabled = true;
      this.element.dataset.state = "ready";
      return;
    }
    const answer = await this.api.query(body);
    if (this.ctx !== ctx || body.dimensions[0] !== this.tab.dimension(ctx.state)) return; // superseded
    this.render(body, answer);
    this.element.dataset.state = "ready";
  }

  render(body, answer) {
    const dimension = body.dimensions[0];
    const metrics = body.metrics;
    const rows = answer.results;
    this.csvButton.disabled = rows.length === 0;
    if (rows.length === 0) {
      fill(this.list, h("p", { class: "empty" }, "No data for this range and filters."));
    } else {
      const top = Math.max(1, ...rows.map((r) => r.metrics[0] || 0));
      fill(
        this.list,
        h(
          "div",
          { class: "row head" },
          h("span", { class: "label" }, this.tab.label),
          metrics.map((m) => h("span", { class: "num" }, METRIC_NAMES[m] || m)),
        ),
        rows.map((r) => this.row(dimension, metrics, r, top)),
      );
    }
    const s = answer.meta.suppression || { rows_folded: 0, other_rows_withheld: 0, min_visitors: 1 };
    const notes = [];
    if (answer.meta.total_rows > rows.length) notes.push(`Showing ${rows.length} of ${answer.meta.total_rows} rows (the CSV has them all).`);
    if (s.rows_folded > 0) {
      const what = `${s.rows_folded} ${s.rows_folded === 1 ? "row" : "rows"} with fewer than ${s.min_visitors} visitors`;
      notes.push(
        s.other_rows_withheld > 0
          ? `${what} withheld: together they are still fewer than ${s.min_visitors} visitors, so not even ${OTHER} is shown.`
          : `${what} folded into ${OTHER}.`,
      );
    }
    this.note.hidden = notes.length === 0;
    this.note.textContent = notes.join(" ");
  }

  row(dimension, metrics, r, top) {
    const value = r.dimensions[0];
    const other = value === OTHER;
    const bar = h("span", { class: "bar" });
    bar.style.width = `${Math.max(0.5, (100 * (r.metrics[0] || 0)) / top)}%`; // CSSOM: allowed by the CSP
    const text = label(dimension, value);
    return h(
      "div",
      { class: other ? "row other" : "row", "data-value": value },
      bar,
      other
        ? h("span", { class: "label", title: "Rows below the suppression threshold, counted together" }, text)
        : h(
            "button",
            { type: "button", class: "label", title: `Filter by ${text}`, onclick: () => this.onFilter(dimension, value) },
            text,
          ),
      metrics.map((m, i) => h("span", { class: "num", "data-metric": m }, show(m, r.metrics[i]))),
    );
  }

  async downloadCsv() {
    if (!this.ctx) return;
    const body = this.body(this.ctx, 0);
    if (!body) return;
    try {
      download(await this.api.csv(body), this.fileName(this.tab.id));
    } catch (e) {
      this.onError(e);
    }
  }
}
