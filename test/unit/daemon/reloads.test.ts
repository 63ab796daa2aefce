// The reload queue: configs are applied one at a time in the order they came, each caller learns
// when its own config is in force, and a failed reload does not stop the ones behind it.
import { strict as assert } from "node:assert";
import type { ConfigEvent } from "../../../src/config/index.js";
import { ReloadQueue, type ReloadOutcome } from "../../../src/daemon/reloads.js";

const rejected = (n: number): ConfigEvent => ({ kind: "rejected", problems: [{ path: String(n), message: "x" }] });

describe("daemon/reloads", () => {
  it("applies events one at a time in arrival order, each promise settling with its own outcome", async () => {
    const log: string[] = [];
    let running = 0;
    const q = new ReloadQueue(async (ev) => {
      const n = ev.kind === "rejected" ? ev.problems[0]!.path : "?";
      running++;
      assert.equal(running, 1, "never two reloads at once");
      log.push(`start ${n}`);
      await new Promise((r) => setTimeout(r, 5 - Number(n)));   // the first takes longest
      log.push(`end ${n}`);
      running--;
      return (Number(n) % 2 ? "applied" : "unchanged") as ReloadOutcome;
    });
    const outcomes = await Promise.all([1, 2, 3].map((n) => q.push(rejected(n))));
    assert.deepEqual(outcomes, ["applied", "unchanged", "applied"]);
    assert.deepEqual(log, ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
  });

  it("a reload that throws rejects its own promise only; the next one still runs", async () => {
    const q = new ReloadQueue(async (ev) => {
      if (ev.kind === "rejected" && ev.problems[0]!.path === "1") throw new Error("boom");
      return "applied";
    });
    const first = q.push(rejected(1)), second = q.push(rejected(2));
    await assert.rejects(first, /boom/);
    assert.equal(await second, "applied");
    await q.idle();
  });
});
