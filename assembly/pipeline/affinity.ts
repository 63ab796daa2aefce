// sessionAffinity: ClientIP: (service entry id, client address) -> the backend it was given, for
// timeoutSeconds after the last new connection (kube-proxy's "recent" match does the same).
// Direct-mapped: a collision forgets an older client's affinity; it never traps.
import { addrCopy, addrEq } from "../mem";
import { hashAddrWord, pow2AtLeast } from "../table/hash";
import { regionAlloc, regionFree } from "../table/region";

// A_SVC holds the service id + 1 (0: unused). A_BACKEND is where the backend was in its list,
// A_IDENT who it is (address and port hashed): a reload may move it, and the affinity follows
// the backend, not the position, as kube-proxy's does.
const A_CLIENT = 0, A_SVC = 16, A_BACKEND = 20, A_LAST = 24, A_IDENT = 28, ENTRY = 32;
let base: usize = 0;
let mask: u32 = 0;
let lastEntry: usize = 0;

// Sized with the flow table (a quarter of its records): affinityResize moves the entries into a
// bigger table when the flow table grows (between batches), a collision keeping the later one.
/** Resizes to pow2AtLeast(n) entries; false when memory is out, with the table as it was. */
export function affinityResize(n: u32): bool {
  const cap = pow2AtLeast(n), at = regionAlloc(<usize>cap * ENTRY, true);
  if (at == 0) return false;
  const old = base, oldCap: u32 = base == 0 ? 0 : mask + 1;
  base = at; mask = cap - 1;
  for (let i: u32 = 0; i < oldCap; i++) {
    const e = old + <usize>i * ENTRY, svc = load<u32>(e + A_SVC);
    if (svc != 0) memory.copy(entryFor(svc - 1, e + A_CLIENT), e, ENTRY);
  }
  regionFree(old, <usize>oldCap * ENTRY);
  return true;
}

@inline function entryFor(svc: u32, client: usize): usize {
  return base + <usize>(hashAddrWord(client, <u64>svc, 0xaff1) & mask) * ENTRY;
}

/** The remembered backend index (check its identity with rememberedIdent()), or -1. */
export function lookup(svc: u32, client: usize, now: u32, timeoutSec: u32): i32 {
  const e = entryFor(svc, client);
  lastEntry = e;
  if (load<u32>(e + A_SVC) != svc + 1 || !addrEq(e + A_CLIENT, client)) return -1;
  if (now - load<u32>(e + A_LAST) >= timeoutSec) return -1;
  return <i32>load<u32>(e + A_BACKEND);
}

/** Identity of the backend the last lookup() found. */
export function rememberedIdent(): u32 { return load<u32>(lastEntry + A_IDENT); }

/** The client opened a new connection to the remembered backend, now at index `backend`. */
export function touch(now: u32, backend: u32): void {
  store<u32>(lastEntry + A_LAST, now);
  store<u32>(lastEntry + A_BACKEND, backend);
}

export function remember(svc: u32, client: usize, backend: u32, ident: u32, now: u32): void {
  const e = entryFor(svc, client);
  addrCopy(e + A_CLIENT, client);
  store<u32>(e + A_SVC, svc + 1);
  store<u32>(e + A_BACKEND, backend);
  store<u32>(e + A_LAST, now);
  store<u32>(e + A_IDENT, ident);
}

/** Identity of a backend (16-byte address at b, port in host order). */
@inline export function backendIdent(b: usize, port: u32): u32 { return hashAddrWord(b, <u64>port, 0x1de7); }
