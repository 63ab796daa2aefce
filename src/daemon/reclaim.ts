// After a reload that made much garbage (a full load, a file rewritten in many places), the old
// config's and model's objects are dead but V8 keeps their heap pages until a full collection it may
// not run for a long time: at 30,000 services the daemon held 150 MiB of old space right after the
// load, 80 MiB once collected, and its RSS 298 MiB against 262 with one collection after the load
// (scale bench, quick). So a reload that grew the heap by RECLAIM_GROWTH_BYTES since the last
// collection is followed by one, on the next turn of the event loop (a pause of ~30-100 ms at that
// size; a one-service change grows the heap by far less and never pays it).
import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

export const RECLAIM_GROWTH_BYTES = 64 * 2 ** 20;

const used = () => getHeapStatistics().used_heap_size;

export class HeapReclaimer {
  private base = used();
  private pending = false;

  /** collect: the full collection (default: V8's gc, exposed on first use). */
  constructor(private collect?: () => void) {}

  /** Called after each applied reload. */
  afterReload(): void {
    if (this.pending || used() - this.base < RECLAIM_GROWTH_BYTES) return;
    if (!this.collect) {
      setFlagsFromString("--expose-gc");
      this.collect = runInNewContext("gc") as () => void;
    }
    this.pending = true;
    setImmediate(() => {
      this.collect?.();
      this.base = used();
      this.pending = false;
    });
  }
}
