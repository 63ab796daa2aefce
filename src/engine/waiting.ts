// What waits for room: when the tables cannot take all of a load or delta (a ceiling, or memory),
// they take what fits and each upsert that did not waits here, by key, to be tried again with every
// later load or delta. Engine.loadModel and applyDelta commit through WaitingUpserts.commit.
import * as abi from "./abi.js";
import type { ModelDelta } from "../model/model.js";

/** The core refused a load or delta (its CommitResult named); it still serves the tables it had. */
export class EngineRefusedError extends Error {
  constructor(readonly what: string, readonly result: abi.CommitResult) {
    super(`the engine refused the ${what}: ${abi.CommitResult[result] ?? result}`);
    this.name = "EngineRefusedError";
  }
}

/** Commit results that mean "no room" (a ceiling, or memory): what fits is applied, the rest waits. */
const NO_ROOM = new Set([abi.CommitResult.ServicesFull, abi.CommitResult.BackendsFull, abi.CommitResult.RoutesFull,
  abi.CommitResult.LocalAddrsFull, abi.CommitResult.OutOfMemory]);

/** One upsert the tables could not take: retried with every later load or delta. */
type Waiting = { key: string; delta: ModelDelta };

const NOTHING: ModelDelta = {
  clear: false, deleteServices: [], upsertServices: [], deleteRoutes: [], upsertRoutes: [], deleteLocalAddrs: [], addLocalAddrs: [],
  deleteVips: [], addVips: [],
};

/** How many upserts wait, by kind (vips: addresses whose echo marker, ping answered, waits). */
export interface WaitingCounts { services: number; routes: number; localAddrs: number; vips: number }

export class WaitingUpserts {
  /** Upserts that did not fit, by key ("s:" service key, "r:" route, "l:" local address, "v:" VIP). */
  private readonly items = new Map<string, Waiting>();
  /** Why the last load or delta left some waiting. */
  refusal: abi.CommitResult | undefined;

  get size(): number { return this.items.size; }
  clear(): void { this.items.clear(); }

  counts(): WaitingCounts {
    const counts = { services: 0, routes: 0, localAddrs: 0, vips: 0 };
    const kinds = { s: "services", r: "routes", l: "localAddrs", v: "vips" } as const;
    for (const k of this.items.keys()) counts[kinds[k[0] as keyof typeof kinds]]++;
    return counts;
  }

  /** Commits `delta` and what still waits through `tryCommit` (one commit, the core's answer); what
   *  does not fit waits. Throws an EngineRefusedError for anything but "no room". */
  commit(delta: ModelDelta, what: string, tryCommit: (d: ModelDelta) => abi.CommitResult): void {
    // What this delta decides waits no more; what still waits goes after it.
    const waiting = this.items;
    if (delta.clear) waiting.clear();
    for (const k of delta.deleteServices) waiting.delete(`s:${k.key}`);
    for (const e of delta.upsertServices) waiting.delete(`s:${e.key}`);
    for (const r of [...delta.deleteRoutes, ...delta.upsertRoutes]) waiting.delete(`r:${r.key}`);
    for (const a of [...delta.deleteLocalAddrs, ...delta.addLocalAddrs]) waiting.delete(`l:${a}`);
    for (const a of [...delta.deleteVips, ...delta.addVips]) waiting.delete(`v:${a}`);
    const items = [
      ...delta.upsertRoutes.map((r): Waiting => ({ key: `r:${r.key}`, delta: { ...NOTHING, upsertRoutes: [r] } })),
      ...delta.addLocalAddrs.map((a): Waiting => ({ key: `l:${a}`, delta: { ...NOTHING, addLocalAddrs: [a] } })),
      ...delta.upsertServices.map((e): Waiting => ({ key: `s:${e.key}`, delta: { ...NOTHING, upsertServices: [e] } })),
      ...delta.addVips.map((a): Waiting => ({ key: `v:${a}`, delta: { ...NOTHING, addVips: [a] } })),
      ...waiting.values(),
    ];
    const base: ModelDelta = { ...delta, upsertRoutes: [], addLocalAddrs: [], upsertServices: [], addVips: [] };
    let r = tryCommit(merge(base, items));
    if (r === abi.CommitResult.Ok) { waiting.clear(); this.refusal = undefined; return; }
    if (!NO_ROOM.has(r)) throw new EngineRefusedError(what, r);
    // Not everything fits. The deletes (and a Clear) always do: they go first, on their own. Then
    // the longest run of the additions that fits, found by halving (a few commits, not one per
    // entry); the rest waits and is tried again with every later load or delta.
    const refusal = r;
    if (!isNothing(base)) {
      r = tryCommit(base);
      if (r !== abi.CommitResult.Ok) throw new EngineRefusedError(what, r);
    }
    // items[0, fit) are in; a run that fits is followed by another of its size, one that does not
    // by one of half its size, down to a single item.
    let fit = 0, step = (items.length + 1) >> 1;
    while (fit < items.length && step > 0) {
      const end = Math.min(items.length, fit + step);
      r = tryCommit(merge(NOTHING, items.slice(fit, end)));
      if (r === abi.CommitResult.Ok) fit = end;
      else if (NO_ROOM.has(r)) step >>= 1;
      else throw new EngineRefusedError(what, r);
    }
    waiting.clear();
    for (const it of items.slice(fit)) waiting.set(it.key, it);
    this.refusal = waiting.size > 0 ? refusal : undefined;
  }
}

/** One delta of `base` and every item's upserts. */
function merge(base: ModelDelta, items: readonly Waiting[]): ModelDelta {
  if (items.length === 0) return base;
  return {
    ...base,
    upsertRoutes: [...base.upsertRoutes, ...items.flatMap((i) => i.delta.upsertRoutes)],
    addLocalAddrs: [...base.addLocalAddrs, ...items.flatMap((i) => i.delta.addLocalAddrs)],
    upsertServices: [...base.upsertServices, ...items.flatMap((i) => i.delta.upsertServices)],
    addVips: [...base.addVips, ...items.flatMap((i) => i.delta.addVips)],
  };
}

function isNothing(d: ModelDelta): boolean {
  return !d.clear && d.deleteServices.length === 0 && d.deleteRoutes.length === 0 && d.deleteLocalAddrs.length === 0 &&
    d.upsertServices.length === 0 && d.upsertRoutes.length === 0 && d.addLocalAddrs.length === 0 &&
    d.deleteVips.length === 0 && d.addVips.length === 0;
}
