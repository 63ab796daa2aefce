// src/main.ts through the dev launcher, as a runtime or an operator would run the binary.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

const WASP = new URL("../../../bin/wasp-dev", import.meta.url).pathname;
const run = (args: string[], env: NodeJS.ProcessEnv, input = "") => {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CNI_")) clean[k] = v;
  return spawnSync(WASP, args, { env: { ...clean, ...env }, input, encoding: "utf8", cwd: "/" });
};

describe("main: one binary, CNI plugin or CLI", function () {
  this.timeout(30_000);
  it("with CNI_COMMAND set it is the CNI plugin (VERSION from any working directory)", () => {
    const r = run([], { CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.1.0"}');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { cniVersion: "1.1.0", supportedVersions: ["0.4.0", "1.0.0", "1.1.0"] });
  });
  it("without CNI_COMMAND and arguments it prints the CLI's usage with its commands and exit codes (exit 0)", () => {
    const r = run([], {});
    assert.equal(r.status, 0);
    assert.match(r.stdout, /Usage: wasp/);
    assert.match(r.stdout, /^ {2}daemon /m);
    assert.match(r.stdout, /^ {2}status /m);
    assert.match(r.stdout, /Exit codes:/);
  });
  it("an unknown command exits 2 and names the command", () => {
    const r = run(["frobnicate"], {});
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });
});
