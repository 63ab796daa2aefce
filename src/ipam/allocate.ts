// Address choice: round robin after the last address handed out (like host-local), so the address
// released a moment ago is the last one to come back.
import { formatAddr, parseAddr } from "./cidr.js";
import { poolContains, type Pool } from "./pool.js";
import { sameOwner, StoreError, type Owner, type Store } from "./store.js";

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

/** Picks and claims an address of `pool` for `owner`; `range` names the last_reserved_ip file. */
export async function allocate(store: Store, pool: Pool, owner: Owner, range: number): Promise<Allocated> {
  const all = await store.list();
  const mine = all.find((a) => a.valid && sameOwner(a, owner) && poolContains(pool, a.family, a.value));
  if (mine) return { ip: mine.ip, reused: true };

  const taken = new Set(all.map((a) => a.value));
  const lastText = await store.lastReserved(range);
  const last = lastText === undefined ? undefined : parseAddr(lastText);
  let cand = last && poolContains(pool, last.family, last.value) ? next(pool, last.value) : pool.first;
  for (let tried = 0n; tried < pool.size; tried++, cand = next(pool, cand)) {
    if (taken.has(cand)) continue;
    const ip = formatAddr(pool.family, cand);
    if (await store.claim(ip, owner)) {
      await store.setLastReserved(range, ip);
      return { ip, reused: false };
    }
    taken.add(cand); // another ADD won it a moment ago
  }
  throw new PoolExhaustedError(pool, taken.size);
}

function next(pool: Pool, v: bigint): bigint {
  return v >= pool.last ? pool.first : v + 1n;
}

/** Free addresses left (for STATUS); counts only records inside the pool. */
export async function freeCount(store: Store, pool: Pool): Promise<bigint> {
  let used = 0n;
  for (const name of await store.takenNames()) {
    const a = parseAddr(name);
    if (a && poolContains(pool, a.family, a.value)) used++;
  }
  return pool.size - used;
}
