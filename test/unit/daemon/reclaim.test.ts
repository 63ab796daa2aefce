// A reload that left much garbage is followed by one full collection; a small one is not (the heap's
// growth is V8's own figure, getHeapStatistics).
import { strict as assert } from "node:assert";
import { HeapReclaimer, RECLAIM_GROWTH_BYTES } from "../../../src/daemon/reclaim.js";

const turn = () => new Promise((r) => setImmediate(r));

describe("daemon/reclaim", () => {
  it("collects once, on the next turn, after the heap grew by more than RECLAIM_GROWTH_BYTES; not after a small reload", async () => {
    let collections = 0;
    const r = new HeapReclaimer(() => { collections++; });
    const small = Array.from({ length: 1000 }, (_, i) => ({ i }));
    r.afterReload();
    await turn();
    assert.equal(collections, 0, `a small reload (${small.length} objects) collects nothing`);
    // ~100 MiB of objects: 1.5M of them at ~70 bytes each
    const big = Array.from({ length: 1_500_000 }, (_, i) => ({ i, s: [i] }));
    r.afterReload();
    r.afterReload();   // a second reload before the collection ran asks for none more
    assert.equal(collections, 0, "not inside the reload: on the next turn of the event loop");
    await turn();
    assert.equal(collections, 1, `one collection after the heap grew past ${RECLAIM_GROWTH_BYTES >> 20} MiB (${big.length} objects)`);
  });
});
