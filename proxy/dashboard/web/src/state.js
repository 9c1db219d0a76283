// What the page shows is all in its URL: /dashboard/<site>?period=30d&visit:source=Google&prop=plan
// (period: a named range, or "custom" with from= and to=; every other "visit:…" / "event:…" parameter is a
// filter "dimension is value"). So a view can be shared or bookmarked, and Back undoes a click.

export const RANGES = [
  ["day", "Today"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["month", "This month"],
  ["6mo", "Last 6 months"],
  ["12mo", "Last 12 months"],
  ["year", "This year"],
  ["all", "All time"],
  ["custom", "Custom range"],
];
export const DEFAULT_PERIOD = "30d";
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const FILTER = /^(visit|event):[a-z_]+(:.{1,64})?$/;

/**
 * @typedef {{period: string, from: string, to: string, filters: [string, string][], prop: string}} State
 * @param {string} search @returns {State}
 */
export function readState(search) {
  const p = new URLSearchParams(search);
  let period = p.get("period") || DEFAULT_PERIOD;
  if (!RANGES.some(([value]) => value === period)) period = DEFAULT_PERIOD;
  const from = p.get("from") || "";
  const to = p.get("to") || "";
  if (period === "custom" && !(DATE.test(from) && DATE.test(to) && from <= to)) period = DEFAULT_PERIOD;
  /** @type {[string, string][]} */
  const filters = [];
  for (const [name, value] of p) {
    if (FILTER.test(name) && !filters.some(([d]) => d === name)) filters.push([name, value]);
  }
  const prop = (p.get("prop") || "").slice(0, 64);
  return { period, from: period === "custom" ? from : "", to: period === "custom" ? to : "", filters, prop };
}

/** @param {State} state */
export function writeState(state) {
  const p = new URLSearchParams();
  if (state.period !== DEFAULT_PERIOD) p.set("period", state.period);
  if (state.period === "custom") {
    p.set("from", state.from);
    p.set("to", state.to);
  }
  for (const [dimension, value] of state.filters) p.set(dimension, value);
  if (state.prop) p.set("prop", state.prop);
  const text = p.toString();
  return text ? `?${text}` : "";
}

/** The API's date_range for the state. */
export function dateRange(state) {
  return state.period === "custom" ? [state.from, state.to] : state.period;
}

/** The API's filters for the state: each chip is "dimension is value". */
export function apiFilters(state) {
  return state.filters.map(([dimension, value]) => ["is", dimension, [value]]);
}

/** The state with a filter set (one value per dimension: a new click replaces the old one). */
export function withFilter(state, dimension, value) {
  return { ...state, filters: [...state.filters.filter(([d]) => d !== dimension), [dimension, value]] };
}

export function withoutFilter(state, dimension) {
  return { ...state, filters: state.filters.filter(([d]) => d !== dimension) };
}

const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+00:00");

/**
 * The period to compare with: as long as the range the API answered for (its `query.date_range`, first
 * and last second), right before it, and cut where the range is cut by now (today so far is compared
 * with the same hours of yesterday, this month so far with as many days before it).
 * @param {[string, string]} answered @param {number} now
 */
export function previousRange(answered, now) {
  const start = Date.parse(answered[0]);
  const end = Date.parse(answered[1]) + 1000;
  const length = end - start;
  const cut = Math.min(end, Math.max(start + 1000, now));
  return [iso(start - length), iso(cut - length - 1000)];
}
