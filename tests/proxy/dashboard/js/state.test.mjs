// The dashboard's URL state and previous-period rule (proxy/dashboard/web/src/state.js), run by node's
// own test runner from tests/proxy/dashboard/test_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  apiFilters,
  dateRange,
  previousRange,
  readState,
  withFilter,
  withoutFilter,
  writeState,
} from "../../../../proxy/dashboard/web/src/state.js";

test("the URL round-trips: range, filters in order, property", () => {
  const state = readState("?period=custom&from=2026-03-01&to=2026-03-10&visit:source=Google&event:props:plan=pro&prop=plan");
  assert.deepEqual(state, {
    period: "custom",
    from: "2026-03-01",
    to: "2026-03-10",
    filters: [
      ["visit:source", "Google"],
      ["event:props:plan", "pro"],
    ],
    prop: "plan",
  });
  assert.deepEqual(readState(writeState(state)), state);
  assert.deepEqual(dateRange(state), ["2026-03-01", "2026-03-10"]);
  assert.deepEqual(apiFilters(state), [
    ["is", "visit:source", ["Google"]],
    ["is", "event:props:plan", ["pro"]],
  ]);
  assert.equal(writeState(readState("")), ""); // the default view has a bare URL
});

test("values with URL syntax in them survive", () => {
  const state = withFilter(readState(""), "event:page", "/a?b=c&d=e#f");
  assert.deepEqual(readState(writeState(state)).filters, [["event:page", "/a?b=c&d=e#f"]]);
});

test("what the URL cannot mean falls back to the default, never to an error", () => {
  assert.equal(readState("?period=forever").period, "30d");
  assert.equal(readState("?period=custom&from=2026-03-10&to=2026-03-01").period, "30d"); // reversed
  assert.equal(readState("?period=custom&from=yesterday&to=2026-03-01").period, "30d");
  assert.deepEqual(readState("?site_id=other&metrics=x&visit:=a&evil:x=1").filters, []);
  assert.equal(readState(`?prop=${"k".repeat(100)}`).prop.length, 64);
});

test("a click replaces the filter on its dimension and adds one on another", () => {
  let state = withFilter(readState(""), "visit:source", "Google");
  state = withFilter(state, "visit:source", "Bing");
  state = withFilter(state, "visit:country", "DE");
  assert.deepEqual(state.filters, [
    ["visit:source", "Bing"],
    ["visit:country", "DE"],
  ]);
  assert.deepEqual(withoutFilter(state, "visit:source").filters, [["visit:country", "DE"]]);
});

test("the previous period of a finished range is as long, right before it", () => {
  const answered = ["2026-03-01T00:00:00+00:00", "2026-03-10T23:59:59+00:00"];
  const now = Date.parse("2026-04-01T00:00:00Z");
  assert.deepEqual(previousRange(answered, now), ["2026-02-19T00:00:00+00:00", "2026-02-28T23:59:59+00:00"]);
});

test("a range that runs on past now is compared up to the same point", () => {
  const today = ["2026-03-20T00:00:00+01:00", "2026-03-20T23:59:59+01:00"]; // a site an hour east of UTC
  const now = Date.parse("2026-03-20T09:30:00Z"); // 10:30 there
  assert.deepEqual(previousRange(today, now), ["2026-03-18T23:00:00+00:00", "2026-03-19T09:29:59+00:00"]);
});
