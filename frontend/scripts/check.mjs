// Fails when ../static differs from a fresh build of the sources (someone edited src/ and forgot
// `npm run build`, or edited static/ by hand). Builds into a temp dir and compares byte for byte.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const staticDir = resolve(here, "..", "..", "static");
const tmp = mkdtempSync(join(tmpdir(), "dlplay-check-"));
try {
  execFileSync(process.execPath, [join(here, "build.mjs"), tmp], { stdio: "inherit" });
  const stale = [];
  for (const name of readdirSync(tmp)) {
    const built = readFileSync(join(tmp, name));
    const target = join(staticDir, name);
    if (!existsSync(target)) stale.push(`${name} (missing in static/)`);
    else if (!built.equals(readFileSync(target))) stale.push(`${name} (differs)`);
  }
  if (stale.length) {
    console.error(`static/ is stale vs a fresh build: ${stale.join(", ")}\nRun \`npm run build\` in frontend/.`);
    process.exit(1);
  }
  console.log("static/ is up to date");
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
