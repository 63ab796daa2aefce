// Address choice: round robin after the last address handed out (like host-local), so the address
// released a moment ago is the last one to come back. Each candidate is simply claimed: a taken
// one fails at once (EEXIST), so a pick reads no other pod's record; only after a run of taken
// candidates (a pool that has wrapped around) is the directory listed, once, to skip the rest.
import { formatAddr, parseAddr } from "./cidr.js";
import { poolContains, type Pool } from "./pool.js";
import { StoreError, type Owner, type Store } from "./store.js";

export interface Allocated {
  ip: string;
  /** True when the owner already held an address in this pool (a retried ADD gets it back). */
  reused: boolean;
}

export class PoolExhaustedError extends StoreError {
  constructor(readonly pool: Pool, inUse: number) {
    super(`ipam: no free address in ${pool.cidr.text} (${inUse} in use, ${pool.size} usable)`, true);
  }
}

/** Taken candidates tried before the directory is listed to skip the others. */
const PROBES_BEFORE_LISTING = 16;

/** Picks and claims an address of `pool` for `owner`; `range` names the last_reserved_ip file. */
export async function allocate(store: Store, pool: Pool, owner: Owner, range: number): Promise<Allocated> {
  for (const ip of await store.heldBy(owner)) {
    const a = parseAddr(ip)!;
    if (poolContains(pool, a.family, a.value)) return { ip, reused: true };
  }

  const lastText = await store.lastReserved(range);
  const last = lastText === undefined ? undefined : parseAddr(lastText);
  let cand = last && poolContains(pool, last.family, last.value) ? next(pool, last.value) : pool.first;
  let taken: Set<bigint> | undefined, misses = 0;
  for (let tried = 0n; tried < pool.size; tried++, cand = next(pool, cand)) {
    if (taken?.has(cand)) continue;
    const ip = formatAddr(pool.family, cand);
    if (await store.claim(ip, owner)) {
      await store.setLastReserved(range, ip);
      return { ip, reused: false };
    }
    if (++misses === PROBES_BEFORE_LISTING) taken = await takenIn(store, pool);
    taken?.add(cand); // another ADD won it a moment ago
  }
  throw new PoolExhaustedError(pool, (await takenIn(store, pool)).size);
}

function next(pool: Pool, v: bigint): bigint {
  return v >= pool.last ? pool.first : v + 1n;
}

/** The pool's addresses that have a record, by file name (no reads). */
async function takenIn(store: Store, pool: Pool): Promise<Set<bigint>> {
  const out = new Set<bigint>();
  for (const name of await store.takenNames()) {
    const a = parseAddr(name);
    if (a && poolContains(pool, a.family, a.value)) out.add(a.value);
  }
  return out;
}

/** Free addresses left (for STATUS); counts only records inside the pool. */
export async function freeCount(store: Store, pool: Pool): Promise<bigint> {
  return pool.size - BigInt((await takenIn(store, pool)).size);
}
