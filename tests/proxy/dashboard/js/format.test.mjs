// How figures and changes are shown (proxy/dashboard/web/src/format.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { change, duration, label, metric } from "../../../../proxy/dashboard/web/src/format.js";

test("figures", () => {
  assert.equal(metric("visitors", 1234567), "1,234,567");
  assert.equal(metric("bounce_rate", 53), "53%");
  assert.equal(metric("visit_duration", 65), "1m 5s");
  assert.equal(metric("views_per_visit", 2.5), "2.5");
  assert.equal(metric("visitors", null), "—");
  assert.equal(duration(7322), "2h 2m");
  assert.equal(duration(9), "9s");
});

test("changes against the previous period", () => {
  assert.deepEqual(change("visitors", 150, 100), { text: "+50%", trend: "up", good: true });
  assert.deepEqual(change("visitors", 50, 100), { text: "−50%", trend: "down", good: false });
  assert.deepEqual(change("visitors", 7, 0), { text: "new", trend: "up", good: true });
  assert.deepEqual(change("bounce_rate", 40, 55), { text: "−15 pts", trend: "down", good: true }); // lower is better
  assert.equal(change("bounce_rate", 40, 0, false).text, "no previous data");
  assert.equal(change("visit_duration", 40, 0, false).text, "no previous data");
});

test("countries by name, other values as they are", () => {
  assert.equal(label("visit:country", "DE"), "Germany");
  assert.equal(label("visit:country", "(not set)"), "(not set)");
  assert.equal(label("visit:source", "DE"), "DE");
});
