// How figures are shown. Counts exactly as the API answers them (with thousands separators), bounce
// rate in per cent, durations in minutes and seconds.

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

export function duration(seconds) {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${r}s`;
  return `${r}s`;
}

/** @param {string} metric @param {number | null | undefined} value */
export function metric(metric, value) {
  if (value === null || value === undefined) return "—";
  if (metric === "bounce_rate") return `${integer.format(value)}%`;
  if (metric === "percentage") return `${decimal.format(value)}%`;
  if (metric === "visit_duration") return duration(value);
  if (metric === "views_per_visit") return decimal.format(value);
  return integer.format(value);
}

const RATES = new Set(["bounce_rate", "visit_duration", "views_per_visit"]);

/**
 * The change against the previous period: {text, trend: "up" | "down" | "flat", good: boolean}.
 * `hadVisitors`: whether the previous period had any visitors (rates of an empty period mean nothing).
 */
export function change(metric, current, previous, hadVisitors = true) {
  if (current === null || current === undefined || previous === null || previous === undefined) {
    return { text: "", trend: "flat", good: true };
  }
  if (!hadVisitors && RATES.has(metric)) return { text: "no previous data", trend: "flat", good: true };
  let diff;
  let text;
  if (metric === "bounce_rate") {
    diff = current - previous;
    text = `${diff > 0 ? "+" : diff < 0 ? "−" : "±"}${integer.format(Math.abs(diff))} pts`;
  } else if (previous === 0) {
    diff = current;
    text = current === 0 ? "±0%" : "new";
  } else {
    diff = current - previous;
    const pct = Math.round((100 * Math.abs(diff)) / previous);
    text = `${diff > 0 ? "+" : diff < 0 ? "−" : "±"}${integer.format(pct)}%`;
  }
  const trend = diff > 0 ? "up" : diff < 0 ? "down" : "flat";
  const good = metric === "bounce_rate" ? diff <= 0 : diff >= 0;
  return { text, trend, good };
}

const regions = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;

/** A dimension value as shown: countries by name (the code stays the filter value). */
export function label(dimension, value) {
  if (dimension === "visit:country" && regions && /^[A-Z]{2}$/.test(value)) {
    try {
      return regions.of(value) || value;
    } catch {
      return value;
    }
  }
  return value;
}

export const METRIC_NAMES = {
  visitors: "Visitors",
  visits: "Visits",
  pageviews: "Pageviews",
  events: "Events",
  bounce_rate: "Bounce rate",
  visit_duration: "Visit duration",
  views_per_visit: "Views per visit",
  percentage: "%",
};
