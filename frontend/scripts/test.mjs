// Unit tests of the page's pure modules (editor graph logic, state/URL encoding, schema forms):
// bundles each tests/*.test.ts with esbuild into a temp dir and runs them with node's test runner.
import * as esbuild from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tests = readdirSync(join(root, "tests")).filter((f) => f.endsWith(".test.ts"));
const out = mkdtempSync(join(tmpdir(), "dlplay-unit-"));
try {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: tests.map((f) => join("tests", f)),
    outdir: out,
    bundle: true,
    platform: "node",
    format: "esm",
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
  });
  const files = readdirSync(out).map((f) => join(out, f));
  const run = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
