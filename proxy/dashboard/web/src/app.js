// The dashboard page: /dashboard/<site>. Everything on it comes from the public stats API (api.js), with
// the session cookie standing for the analyst key; the page keeps no key and stores nothing in the browser.
import { Api, ApiError, download, SessionEnded } from "./api.js";
import { dataTable, Graph } from "./chart.js";
import { fill, h } from "./dom.js";
import { change, metric as show, METRIC_NAMES } from "./format.js";
import { ListPanel } from "./panels.js";
import {
  apiFilters,
  dateRange,
  previousRange,
  RANGES,
  readState,
  withFilter,
  withoutFilter,
  writeState,
} from "./state.js";

const TOP = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"];
const REALTIME_SECONDS = 30;
// Events the tracker sends that are not custom events (page views, engagement time, PostHog's page leave).
const NOT_CUSTOM = ["pageview", "engagement", "$pageleave"];
const DIMENSION_NAMES = {
  "visit:source": "Source",
  "visit:utm_medium": "UTM medium",
  "visit:utm_source": "UTM source",
  "visit:utm_campaign": "UTM campaign",
  "visit:utm_content": "UTM content",
  "visit:utm_term": "UTM term",
  "visit:referrer": "Referrer",
  "event:page": "Page",
  "visit:entry_page": "Entry page",
  "visit:exit_page": "Exit page",
  "visit:country": "Country",
  "visit:region": "Region",
  "visit:city": "City",
  "visit:device": "Device",
  "visit:browser": "Browser",
  "visit:os": "Operating system",
  "event:name": "Event",
};

const root = /** @type {HTMLElement} */ (document.getElementById("app"));
const site = root.dataset.site || "";
const sites = JSON.parse(root.dataset.sites || "[]");
const api = new Api(site);
let state = readState(location.search);
let graphMetric = "visitors";
let generation = 0;
let realtimeTimer = 0;

const fixed = (dimension) => () => dimension;
const visitorsOnly = ["visitors"];

// --- layout ---------------------------------------------------------------------------------------------

const notice = h("div", { class: "notice", role: "alert", hidden: true });
const chips = h("ul", { class: "chips", "aria-label": "Filters" });
const rangeSelect = h(
  "select",
  { id: "range", "aria-label": "Date range", onchange: () => onRange() },
  RANGES.map(([value, text]) => h("option", { value }, text)),
);
const fromInput = h("input", { type: "date", id: "from", "aria-label": "From" });
const toInput = h("input", { type: "date", id: "to", "aria-label": "To" });
const custom = h(
  "form",
  { class: "custom-range", hidden: true, onsubmit: (e) => onCustom(e) },
  fromInput,
  h("span", {}, "to"),
  toInput,
  h("button", { type: "submit" }, "Apply"),
);
const exportLink = h("a", { class: "button", id: "export", download: "", title: "Every report of the range, as a zip of CSV files" }, "Export zip");
const siteSelect = h(
  "select",
  { id: "site", "aria-label": "Site", onchange: () => location.assign(`/dashboard/${encodeURIComponent(siteSelect.value)}${writeState({ ...state, filters: [], prop: "" })}`) },
  sites.map((s) => h("option", { value: s, selected: s === site }, s)),
);
const signOut = h(
  "form",
  { method: "post", action: "/dashboard/session/end", class: "sign-out" },
  h("button", { type: "submit" }, "Sign out"),
);

const realtimeValue = h("span", { class: "value", id: "realtime" }, "–");
const cards = Object.fromEntries(
  TOP.map((m) => [
    m,
    {
      value: h("span", { class: "value" }, "–"),
      change: h("span", { class: "change" }),
    },
  ]),
);
const stats = h(
  "div",
  { class: "top-stats" },
  h("div", { class: "card realtime" }, h("span", { class: "name" }, "Current visitors"), realtimeValue, h("span", { class: "hint" }, "last 5 minutes")),
  TOP.map((m) =>
    h(
      "button",
      { type: "button", class: "card", "data-metric": m, "aria-pressed": String(m === graphMetric), onclick: () => onGraphMetric(m) },
      h("span", { class: "name" }, METRIC_NAMES[m]),
      cards[m].value,
      cards[m].change,
    ),
  ),
);
const graphRoot = h("div", { class: "graph" });
const graphData = h("details", { class: "graph-table" }, h("summary", {}, "Figures"));
const graph = new Graph(graphRoot);
const graphCsv = h("button", { type: "button", class: "csv", title: "Download the time series as CSV", onclick: () => graphCsvDownload() }, "CSV");
const graphTitle = h("h2", {}, "Visitors over time");

const panelOptions = {
  api,
  onFilter: (dimension, value) => navigate(withFilter(state, dimension, value)),
  onError: (e) => showError(e),
};
const fileName = (what) => {
  const r = dateRange(state);
  return `${site}-${what}-${Array.isArray(r) ? r.join("_") : r}.csv`;
};
const propInput = h("input", { type: "text", id: "prop", name: "prop", placeholder: "property, e.g. plan", maxlength: "64", "aria-label": "Property key" });
const propForm = h(
  "form",
  { class: "prop-form", onsubmit: (e) => onProp(e) },
  h("label", { for: "prop" }, "Break down by property"),
  propInput,
  h("button", { type: "submit" }, "Show"),
);
const panels = [
  new ListPanel({
    ...panelOptions,
    id: "sources",
    title: "Top sources",
    fileName,
    tabs: [
      ["source", "Sources", "visit:source"],
      ["utm_medium", "UTM medium", "visit:utm_medium"],
      ["utm_source", "UTM source", "visit:utm_source"],
      ["utm_campaign", "UTM campaign", "visit:utm_campaign"],
      ["utm_content", "UTM content", "visit:utm_content"],
      ["utm_term", "UTM term", "visit:utm_term"],
    ].map(([id, text, d]) => ({ id, label: text, dimension: fixed(d), metrics: visitorsOnly })),
  }),
  new ListPanel({
    ...panelOptions,
    id: "pages",
    title: "Top pages",
    fileName,
    tabs: [
      { id: "pages", label: "Pages", dimension: fixed("event:page"), metrics: ["visitors", "pageviews"] },
      { id: "entry_pages", label: "Entry pages", dimension: fixed("visit:entry_page"), metrics: ["visitors", "visits"] },
      { id: "exit_pages", label: "Exit pages", dimension: fixed("visit:exit_page"), metrics: ["visitors", "visits"] },
    ],
  }),
  new ListPanel({
    ...panelOptions,
    id: "locations",
    title: "Locations",
    fileName,
    tabs: [
      { id: "countries", label: "Countries", dimension: fixed("visit:country"), metrics: visitorsOnly },
      { id: "regions", label: "Regions", dimension: fixed("visit:region"), metrics: visitorsOnly },
    ],
  }),
  new ListPanel({
    ...panelOptions,
    id: "devices",
    title: "Devices",
    fileName,
    tabs: [
      { id: "devices", label: "Devices", dimension: fixed("visit:device"), metrics: visitorsOnly },
      { id: "browsers", label: "Browsers", dimension: fixed("visit:browser"), metrics: visitorsOnly },
      { id: "os", label: "Operating systems", dimension: fixed("visit:os"), metrics: visitorsOnly },
    ],
  }),
  new ListPanel({
    ...panelOptions,
    id: "events",
    title: "Custom events",
    fileName,
    tabs: [
      {
        id: "events",
        label: "Events",
        dimension: fixed("event:name"),
        metrics: ["visitors", "events"],
        filters: [["is_not", "event:name", NOT_CUSTOM]],
      },
    ],
  }),
  new ListPanel({
    ...panelOptions,
    id: "props",
    title: "Event properties",
    fileName,
    extra: propForm,
    tabs: [
      {
        id: "props",
        label: "Value",
        dimension: (s) => (s.prop ? `event:props:${s.prop}` : null),
        metrics: ["visitors", "events"],
        filters: [["is_not", "event:name", NOT_CUSTOM]],
        empty: "Name a property of your custom events (click an event above to see only its values).",
      },
    ],
  }),
];

fill(
  root,
  h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: "/dashboard" }, "Beacon Proxy"),
    siteSelect,
    h("div", { class: "range" }, rangeSelect, custom),
    h("div", { class: "actions" }, exportLink, signOut),
  ),
  notice,
  chips,
  stats,
  h("section", { class: "panel graph-panel", "data-panel": "graph" }, h("header", { class: "panel-head" }, graphTitle, graphCsv), graphRoot, graphData),
  h("div", { class: "grid" }, panels.map((p) => p.element)),
);

// --- behaviour ------------------------------------------------------------------------------------------

function navigate(next) {
  state = next;
  history.pushState(null, "", location.pathname + writeState(state));
  refresh();
}

window.addEventListener("popstate", () => {
  state = readState(location.search);
  refresh();
});

function onRange() {
  if (rangeSelect.value === "custom") {
    custom.hidden = false;
    fromInput.focus();
    return;
  }
  navigate({ ...state, period: rangeSelect.value, from: "", to: "" });
}

function onCustom(e) {
  e.preventDefault();
  const from = fromInput.value;
  const to = toInput.value;
  if (!from || !to || from > to) {
    showError(new ApiError("Pick a start date on or before the end date."));
    return;
  }
  navigate({ ...state, period: "custom", from, to });
}

function onProp(e) {
  e.preventDefault();
  navigate({ ...state, prop: propInput.value.trim().slice(0, 64) });
}

function onGraphMetric(m) {
  graphMetric = m;
  for (const card of stats.querySelectorAll("button.card")) card.setAttribute("aria-pressed", String(card.dataset.metric === m));
  const gen = generation;
  loadGraph(context(), gen).catch(showError);
}

function context() {
  return { state, range: dateRange(state), filters: apiFilters(state) };
}

function showError(e) {
  notice.hidden = false;
  if (e instanceof SessionEnded) {
    clearInterval(realtimeTimer);
    fill(notice, "Your session has ended. ", h("a", { href: location.pathname + location.search }, "Sign in again"));
    notice.dataset.kind = "session";
  } else {
    fill(notice, e instanceof Error ? e.message : String(e));
    notice.dataset.kind = "error";
  }
}

function renderControls() {
  rangeSelect.value = state.period;
  custom.hidden = state.period !== "custom";
  if (state.period === "custom") {
    fromInput.value = state.from;
    toInput.value = state.to;
  }
  exportLink.href = api.exportUrl(dateRange(state));
  propInput.value = state.prop;
  fill(
    chips,
    state.filters.map(([dimension, value]) => {
      const text = `${DIMENSION_NAMES[dimension] || dimension.replace(/^event:props:/, "Property ")} is ${value}`;
      return h(
        "li",
        { class: "chip", "data-dimension": dimension },
        h("span", {}, text),
        h("button", { type: "button", "aria-label": `Remove filter: ${text}`, title: "Remove filter", onclick: () => navigate(withoutFilter(state, dimension)) }, "×"),
      );
    }),
  );
}

async function loadTop(ctx, gen) {
  const body = { metrics: TOP, date_range: ctx.range, filters: ctx.filters };
  const now = await api.query(body);
  const previous = await api.query({ ...body, date_range: previousRange(now.query.date_range, Date.now()) });
  if (gen !== generation) return;
  const cur = now.results[0]?.metrics || TOP.map(() => 0);
  const prev = previous.results[0]?.metrics || TOP.map(() => 0);
  TOP.forEach((m, i) => {
    cards[m].value.textContent = show(m, cur[i]);
    const c = change(m, cur[i], prev[i], prev[0] > 0);
    cards[m].change.textContent = c.text;
    cards[m].change.title = `previous period: ${show(m, prev[i])}`;
    cards[m].change.dataset.trend = c.trend;
    cards[m].change.dataset.good = String(c.good);
  });
}

async function loadGraph(ctx, gen) {
  const answer = await api.query({
    metrics: [graphMetric],
    date_range: ctx.range,
    dimensions: ["time"],
    filters: ctx.filters,
    include: { time_labels: true },
  });
  if (gen !== generation) return;
  const labels = answer.meta.time_labels || [];
  const found = new Map(answer.results.map((r) => [r.dimensions[0], r.metrics[0]]));
  const values = labels.map((l) => found.get(l) ?? 0);
  const bucket = labels[0] && labels[0].length > 10 ? "hour" : labels.length > 1 && labels[0].slice(8) === "01" && labels[1].slice(8) === "01" ? "month" : "day";
  graphTitle.textContent = `${METRIC_NAMES[graphMetric]} over time`;
  graph.draw(labels, values, graphMetric, bucket);
  fill(graphData, h("summary", {}, "Figures"), dataTable(labels, values, METRIC_NAMES[graphMetric]));
}

async function graphCsvDownload() {
  const ctx = context();
  try {
    const blob = await api.csv({ metrics: [graphMetric], date_range: ctx.range, dimensions: ["time"], filters: ctx.filters });
    download(blob, fileName(`${graphMetric}-over-time`));
  } catch (e) {
    showError(e);
  }
}

async function loadRealtime() {
  if (document.hidden) return;
  try {
    realtimeValue.textContent = show("visitors", await api.realtime());
  } catch (e) {
    showError(e);
  }
}

async function refresh() {
  const gen = ++generation;
  root.dataset.state = "loading";
  notice.hidden = true;
  renderControls();
  const ctx = context();
  const jobs = [loadTop(ctx, gen), loadGraph(ctx, gen), ...panels.map((p) => p.load(ctx))];
  const results = await Promise.allSettled(jobs);
  if (gen !== generation) return;
  const failed = results.find((r) => r.status === "rejected");
  if (failed) showError(/** @type {PromiseRejectedResult} */ (failed).reason);
  root.dataset.state = "ready";
}

refresh();
loadRealtime();
realtimeTimer = window.setInterval(loadRealtime, REALTIME_SECONDS * 1000);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) loadRealtime();
});
