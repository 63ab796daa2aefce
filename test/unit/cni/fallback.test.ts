// src/cni/fallback.ts: wasp-node records a CNI call the front door could not hand to the daemon,
// beside the socket it asked, so doctor can name it; a VERSION probe needs no daemon and is left out.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FALLBACK_LOG, readFallbacks, recordFallback } from "../../../src/cni/fallback.js";

describe("cni fallback log: the calls that missed the daemon", () => {
  let dir = "";
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), "wasp-fallback-")); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const env = (command: string) => ({
    CNI_COMMAND: command, CNI_CONTAINERID: "cid-1", WASP_FRONT_FALLBACK: "no daemon answers", WASP_FRONT_SOCKET: join(dir, "run", "cni.sock"),
  });

  it("a DEL that fell back is recorded beside the socket it asked, with the front door's reason", () => {
    recordFallback(env("DEL"));
    const [f, ...rest] = readFallbacks(join(dir, "run", "cni.sock"));
    assert.equal(rest.length, 0);
    assert.deepEqual([f!.command, f!.containerId, f!.socket, f!.why], ["DEL", "cid-1", join(dir, "run", "cni.sock"), "no daemon answers"]);
  });

  it("a VERSION probe (libcni's, which names no socket) and a call the front door did not divert leave no record", () => {
    recordFallback(env("VERSION"));
    recordFallback({ CNI_COMMAND: "ADD", CNI_CONTAINERID: "cid-2" });
    assert.equal(existsSync(join(dir, "run", FALLBACK_LOG)), false, "a record was written");
  });
});
