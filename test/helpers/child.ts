// A TypeScript test child (a *.child.ts beside its test) run in its own Node process: a core that
// loops forever or a long fuzz run then cannot hang mocha, and the parent sees how it ended.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Runs the child at `url` with `args`, killed after timeoutMs; its stdout (trimmed), stderr and signal. */
export function runChild(url: URL, args: readonly (string | number)[], timeoutMs: number): { stdout: string; stderr: string; signal: NodeJS.Signals | null } {
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(url), ...args.map(String)], { encoding: "utf8", timeout: timeoutMs });
  return { stdout: r.stdout.trim(), stderr: r.stderr, signal: r.signal };
}

/** Runs the child and expects it to finish in time and print "ok"; else fails with what it did not
 *  finish and the first `stderrLines` of its stderr (npm's warnings left out). */
export function expectChildOk(url: URL, args: readonly (string | number)[], timeoutMs: number, what: string, stderrLines: number): void {
  const r = runChild(url, args, timeoutMs);
  assert.equal(r.signal, null, `the ${what} did not finish`);
  assert.equal(r.stdout, "ok", r.stderr.split("\n").filter((l) => !/npm warn/.test(l)).slice(0, stderrLines).join("\n"));
}
