// The house's boundaries (shared/style.md), checked on the source text: only src/engine touches the
// wasm exports, and cli/ reaches a running daemon only through the control socket.
import { strict as assert } from "node:assert";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}

const files = sources(join(ROOT, "src")).map((p) => ({ path: relative(ROOT, p), text: readFileSync(p, "utf8") }));

describe("module boundaries", () => {
  it("finds the sources it checks", () => {
    assert.ok(files.length > 50, `only ${files.length} files under src/`);
  });

  it("no file outside src/engine calls the wasm exports (an Engine method each)", () => {
    const offenders = files.filter((f) => !f.path.startsWith("src/engine/") && /\bexports\.\w+/.test(f.text)).map((f) => f.path);
    assert.deepEqual(offenders, [], "files that reach into the core's exports");
  });

  it("cli/ imports nothing from daemon/ but the daemon's entry point (the CLI talks to a daemon over its socket)", () => {
    const offenders = files.filter((f) => f.path.startsWith("src/cli/"))
      .flatMap((f) => [...f.text.matchAll(/from "(\.\.\/daemon\/[^"]+)"/g)].map((m) => `${f.path}: ${m[1]}`))
      .filter((x) => !/\.\.\/daemon\/(index|daemon)\.js$/.test(x) && !x.endsWith("../daemon/args.js"));
    assert.deepEqual(offenders, [], "cli/ imports of daemon internals");
  });
});
