// The dashboard's build: src/ -> proxy/static/dashboard/ (app.js, app.css, icon.svg), with esbuild.
// Run by `make dashboard` (after `npm ci`); the output is package data, served by proxy/dashboard/assets.py.
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = here("../../static/dashboard/");
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: [here("src/app.js"), here("src/app.css")],
  outdir: out,
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome100", "firefox100", "safari15"],
  legalComments: "eof", // uPlot's licence notice stays in the bundle
  logLevel: "warning",
});
copyFileSync(here("src/icon.svg"), `${out}icon.svg`);
