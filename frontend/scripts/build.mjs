// Bundles src/main.ts -> OUTDIR/app.js (+ app.css from every imported .css) and copies src/index.html;
// the classroom's pages likewise: src/classroom/join.ts -> join.js + join.css (+ join.html) and
// src/classroom/teacher.ts -> teacher.js + teacher.css (+ teacher.html).
// Usage: node scripts/build.mjs OUTDIR [--watch]. Deterministic: the same sources give the same bytes,
// which is what `npm run check` relies on.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const outdir = resolve(process.argv[2] ?? join(root, "..", "static"));
const watch = process.argv.includes("--watch");

/** @type {import("esbuild").BuildOptions} */
const options = {
  absWorkingDir: root,
  entryPoints: { app: "src/main.ts", join: "src/classroom/join.ts", teacher: "src/classroom/teacher.ts" },
  outdir,
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox110", "safari16"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
  loader: { ".svg": "text" },
};

mkdirSync(outdir, { recursive: true });
copyFileSync(join(root, "src", "index.html"), join(outdir, "index.html"));
for (const page of ["join", "teacher"]) copyFileSync(join(root, "src", "classroom", `${page}.html`), join(outdir, `${page}.html`));
if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.log(`watching; writing ${outdir}`);
} else {
  await esbuild.build(options);
}
