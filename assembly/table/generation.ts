// The tables a reload replaces: services, their backends and Maglev lookup tables, routes, the
// node's own addresses and the known peers. Two copies ("generations") live side by side; a commit
// applies the staged ops to the idle copy, flips one index, then replays them on the other copy
// (the left-right scheme), so a packet sees the old tables or the new ones, never half of each,
// and an update costs work proportional to what changed.
//
// Every pointer stored inside a generation is an offset from that generation's base, so the two
// copies are byte-identical after a commit and one memory.copy restores a copy after a failure.
import { addrCopy, addrEq, addrInPrefix, addrMask, ld8, ld16 } from "../mem";
import { hashAddrWord, pow2AtLeast, mix, finish } from "./hash";
import { CommitResult, Op, Select, OP_SERVICE_HEAD, OP_SERVICE_RANGES, OP_BACKEND_SIZE, OP_RANGE_SIZE } from "../abi";
import { regionAlloc, regionFree } from "./region";

// ╒═══ generation header ═══╕  H_SVC_COUNT counts port entries, H_MARKER_COUNT the echo markers (an
// entry with port 0 and protocol 0: a VIP that answers ping, one per address, never more than the
// port entries that use it); the table grows for both, the ceiling (svcMax) counts port entries
const H_SVC_COUNT = 0, H_ROUTE_COUNT = 4, H_LOCAL_COUNT = 8, H_PEER_COUNT = 12, H_BE_BUMP = 16, H_MG_BUMP = 20,
  H_MARKER_COUNT = 24, H_BE_FREE = 32 /* 24 u32 */, H_MG_FREE = 128 /* 24 u32 */, H_LEN_COUNT = 256 /* 129 u32 */,
  H_LENS = 784 /* up to 129 u8, longest first */, H_NLENS = 916, HDR = 1024;

// ╒═══ service entry, 64 bytes ═══╕  S_BACKENDS names the entry's block of BE slots: S_COUNT backends,
// then its source ranges (S_BE_BYTES / BE - S_COUNT of them; svcRangeCount)
export const S_ADDR = 0, S_PORT = 16, S_PROTO = 18, S_USED = 19, S_KIND = 20, S_SELECT = 21, S_FLAGS = 22,
  S_ID = 24, S_AFFINITY = 28, S_BACKENDS = 32, S_COUNT = 36, S_ELIGIBLE = 40, S_MAGLEV = 44, S_MAGLEV_SIZE = 48,
  S_HASH = 52, S_BE_BYTES = 56, S_MG_BYTES = 60, SVC = 64;
// ╒═══ backend, 32 bytes ═══╕  addr16 | port u16 | weight u16; a source range in the same slot: addr16 | len u8 (of 128)
export const B_ADDR = 0, B_PORT = 16, B_RANGE_LEN = 16, BE = 32;
// ╒═══ route entry, 48 bytes ═══╕
export const R_PREFIX = 0, R_LEN = 16, R_KIND = 17, R_NODE = 18, R_UNDERLAY = 20, R_MAC = 24, R_USED = 30,
  R_HASH = 32, ROUTE = 48;
// ╒═══ local address (32 bytes: addr16 | used u8) and peer (16 bytes: underlay u32 | refs u32 | used u8 | hash u32 at 12) ═══╕
const L_USED = 16, LOCAL = 32, LOCAL_CAP: u32 = 256;
const P_IP = 0, P_REFS = 4, P_USED = 8, P_HASH = 12, PEER = 16;

// The copies are sized for what is loaded: a commit first works out what its ops could need at most
// (genNeeds) and, when that is more than the copies hold, rebuilds them into a bigger region
// (genResize: every entry re-inserted, backend lists and Maglev tables copied, the arenas compacted)
// before it applies the ops. Both happen inside commit(), between batches.
let gens: usize = 0;            // base of copy 0; copy 1 follows at gens + genSize
let genSize: usize = 0;
let active: u32 = 0;
let svcCap: u32 = 0, routeCap: u32 = 0, peerCap: u32 = 0;
let offSvc: usize = 0, offRoute: usize = 0, offLocal: usize = 0, offPeer: usize = 0, offBe: usize = 0, offMg: usize = 0;
let beArena: u32 = 0, mgArena: u32 = 0;
let maglevScratch: usize = 0;   // u32 per backend: the Maglev "next" array
let scratchCap: u32 = 0;
let generation: u32 = 0;
// Ceilings (init's config; 0 there means none): the most each table may grow to.
let svcMax: u32 = 0, routeMax: u32 = 0, maxBackendsPerService: u32 = 0;
let svcCapMax: u32 = 0, routeCapMax: u32 = 0, beArenaMax: u32 = 0, mgArenaMax: u32 = 0;

const MIN_SVC_CAP: u32 = 64, MIN_ROUTE_CAP: u32 = 64, MIN_ARENA: u32 = 4096;
const ARENA_MAX: u32 = 1 << 30;

@inline function svcCapFor(n: u32): u32 { return pow2AtLeast(n * 2 + 1); }
@inline function routeCapFor(n: u32): u32 { return pow2AtLeast(n * 2 + 3); }
@inline function atMost(v: u32, max: u32): u32 { return v < max ? v : max; }

function setLayout(sc: u32, rc: u32, be: u32, mg: u32): void {
  svcCap = sc; routeCap = rc; peerCap = rc; beArena = be; mgArena = mg;
  offSvc = HDR;
  offRoute = offSvc + <usize>svcCap * SVC;
  offLocal = offRoute + <usize>routeCap * ROUTE;
  offPeer = offLocal + <usize>LOCAL_CAP * LOCAL;
  offBe = (offPeer + <usize>peerCap * PEER + 63) & ~63;
  offMg = (offBe + beArena + 63) & ~63;
  genSize = (offMg + mgArena + 63) & ~63;
}

/** Ceilings from init's config (0: none): service entries, backends over all services, routes,
 *  Maglev cells over all services. Lays out small empty copies; false when memory is out. */
export function genInit(maxServices: u32, maxBackends: u32, maxRoutes: u32, maglevCells: u32): bool {
  svcMax = maxServices == 0 ? 1 << 20 : maxServices;
  routeMax = maxRoutes == 0 ? 1 << 16 : maxRoutes;
  svcCapMax = svcCapFor(svcMax);
  routeCapMax = routeCapFor(routeMax);
  beArenaMax = maxBackends == 0 ? ARENA_MAX : atMost(maxBackends * BE * 2, ARENA_MAX);
  mgArenaMax = maglevCells == 0 ? ARENA_MAX : atMost(maglevCells * 2 * 2, ARENA_MAX);
  maxBackendsPerService = maxBackends == 0 ? 1 << 22 : maxBackends;
  setLayout(atMost(MIN_SVC_CAP, svcCapMax), atMost(MIN_ROUTE_CAP, routeCapMax), atMost(MIN_ARENA, beArenaMax), atMost(MIN_ARENA, mgArenaMax));
  gens = regionAlloc(genSize * 2, true);
  active = 0;
  generation = 0;
  return gens != 0 && ensureScratch(64);
}

/** Room in the Maglev scratch for a service of n backends. */
function ensureScratch(n: u32): bool {
  if (n <= scratchCap) return true;
  const cap = pow2AtLeast(n), at = regionAlloc(<usize>cap * 4, false);
  if (at == 0) return false;
  regionFree(maglevScratch, <usize>scratchCap * 4);
  maglevScratch = at; scratchCap = cap;
  return true;
}

@inline export function activeGen(): usize { return gens + <usize>active * genSize; }
export function generationNumber(): u32 { return generation; }

// ── arena: segregated free lists of power-of-two blocks, offsets relative to the generation ──

function arenaAlloc(g: usize, bytes: u32, bumpAt: usize, freeAt: usize, base: usize, size: u32): u32 {
  if (bytes == 0) return 0;
  const cls = bytes <= 16 ? 4 : 32 - clz<u32>(bytes - 1);
  if (cls >= 24) return 0;
  const blk: u32 = 1 << cls;
  const headAt = g + freeAt + (<usize>cls << 2);
  // blocks are named by offset + 1 (0 means "none"); a free block holds the next one's name
  const head = load<u32>(headAt);
  if (head != 0) {
    store<u32>(headAt, load<u32>(g + <usize>head - 1));
    return head;
  }
  const bump = load<u32>(g + bumpAt);
  if (<u64>bump + blk > <u64>size) return 0;
  store<u32>(g + bumpAt, bump + blk);
  return <u32>base + bump + 1;
}

function arenaFree(g: usize, off1: u32, bytes: u32, freeAt: usize): void {
  if (off1 == 0 || bytes == 0) return;
  const cls = bytes <= 16 ? 4 : 32 - clz<u32>(bytes - 1);
  const headAt = g + freeAt + (<usize>cls << 2);
  store<u32>(g + <usize>off1 - 1, load<u32>(headAt));
  store<u32>(headAt, off1);
}

// ── services ───────────────────────────────────────────────────────────────────────────

@inline function svcHash(addr: usize, port: u32, proto: u32): u32 {
  return hashAddrWord(addr, (<u64>port << 8) | <u64>proto, 0x5eed);
}

/** The service entry for (addr, port, proto) in generation g, or 0. */
export function svcFind(g: usize, addr: usize, port: u32, proto: u32): usize {
  const h = svcHash(addr, port, proto), mask = svcCap - 1;
  let b = h & mask;
  while (true) {
    const e = g + offSvc + <usize>b * SVC;
    if (load<u8>(e + S_USED) == 0) return 0;
    if (load<u32>(e + S_HASH) == h && <u32>load<u16>(e + S_PORT) == port && <u32>load<u8>(e + S_PROTO) == proto &&
        addrEq(e + S_ADDR, addr)) return e;
    b = (b + 1) & mask;
  }
}

/** Empties slot `hole` of a linear-probing table (`cap` entries of `size` bytes, the hash stored at
 *  `hashAt`, a zero byte at `usedAt` when free) by backward-shift deletion (Knuth 6.4, algorithm R):
 *  no tombstones, so probe chains never grow with churn. */
function shiftDelete(tbl: usize, cap: u32, size: usize, hashAt: usize, usedAt: usize, hole: u32): void {
  const mask = cap - 1;
  let j = (hole + 1) & mask;
  while (true) {
    const ej = tbl + <usize>j * size;
    if (load<u8>(ej + usedAt) == 0) break;
    const home = load<u32>(ej + hashAt) & mask;
    // move the entry into the hole unless its home lies cyclically in (hole, j]
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      memory.copy(tbl + <usize>hole * size, ej, size);
      hole = j;
    }
    j = (j + 1) & mask;
  }
  memory.fill(tbl + <usize>hole * size, 0, size);
}

function svcRemoveSlot(g: usize, e: usize): void {
  const tbl = g + offSvc;
  shiftDelete(tbl, svcCap, SVC, S_HASH, S_USED, <u32>((e - tbl) / SVC));
}

// Maglev (Eisenbud et al., NSDI 2016, §3.4): each backend walks its own permutation of the table
// and claims the next free cell, round-robin, until the table is full.
const MAGLEV_PRIMES: usize = memory.data<u32>([251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65537]);
export function maglevSizeFor(n: u32, asked: u32): u32 {
  if (asked >= 2) return asked;
  for (let i: u32 = 0; i < 9; i++) {
    const p = load<u32>(MAGLEV_PRIMES + (<usize>i << 2));
    if (p >= n * 100) return p;
  }
  return 65537;
}

function isPrime(m: u32): bool {
  if (m < 2) return false;
  if (m % 2 == 0) return m == 2;
  for (let d: u32 = 3; <u64>d * d <= <u64>m; d += 2) if (m % d == 0) return false;
  return true;
}

function maglevFill(table: usize, m: u32, backends: usize, n: u32): void {
  memory.fill(table, 0xff, <usize>m * 2);
  for (let i: u32 = 0; i < n; i++) store<u32>(maglevScratch + (<usize>i << 2), 0);
  let filled: u32 = 0;
  while (true) {
    for (let i: u32 = 0; i < n; i++) {
      const b = backends + <usize>i * BE;
      const w = <u64>load<u16>(b + B_PORT);
      const h1 = hashAddrWord(b + B_ADDR, w, 0x0ff5e7), h2 = hashAddrWord(b + B_ADDR, w, 0x5c1b);
      const offset = h1 % m, skip = h2 % (m - 1) + 1;
      let next = load<u32>(maglevScratch + (<usize>i << 2));
      let c = <u32>((<u64>offset + <u64>next * <u64>skip) % <u64>m);
      while (load<u16>(table + (<usize>c << 1)) != 0xffff) {
        next++;
        c = <u32>((<u64>offset + <u64>next * <u64>skip) % <u64>m);
      }
      store<u16>(table + (<usize>c << 1), <u16>i);
      store<u32>(maglevScratch + (<usize>i << 2), next + 1);
      if (++filled == m) return;
    }
  }
}

function svcFreeStorage(g: usize, e: usize): void {
  arenaFree(g, load<u32>(e + S_BACKENDS), load<u32>(e + S_BE_BYTES), H_BE_FREE);
  arenaFree(g, load<u32>(e + S_MAGLEV), load<u32>(e + S_MG_BYTES), H_MG_FREE);
}

function svcUpsert(g: usize, op: usize, size: u32): CommitResult {
  // op: 8 addr16 | 24 port u16 | 26 proto u8 | 27 kind u8 | 28 id u32 | 32 select u8 | 33 flags u8 | 34 ranges u16 |
  //     36 affinitySec u32 | 40 maglevSize u32 | 44 count u32 | 48 eligible u32 | 52 backends (20 bytes each) | ranges (20 bytes each)
  if (size < OP_SERVICE_HEAD) return CommitResult.BadOp;
  const addr = op + 8, port = <u32>ld16(op + 24), proto = ld8(op + 26);
  const n = load<u32>(op + 44), eligible = load<u32>(op + 48), ranges = <u32>load<u16>(op + OP_SERVICE_RANGES);
  if (eligible > n || <u64>n + <u64>ranges > <u64>maxBackendsPerService ||
      <u64>OP_SERVICE_HEAD + <u64>n * OP_BACKEND_SIZE + <u64>ranges * OP_RANGE_SIZE > <u64>size) return CommitResult.BadOp;
  const rangesAt = op + OP_SERVICE_HEAD + <usize>n * OP_BACKEND_SIZE;
  for (let i: u32 = 0; i < ranges; i++) if (ld8(rangesAt + <usize>i * OP_RANGE_SIZE + 16) > 128) return CommitResult.BadOp;
  // A Maglev permutation covers every cell only when the size is prime; any other size can leave a
  // backend with no free cell on its cycle, and the fill would never end.
  const askedSize = load<u32>(op + 40);
  if (load<u8>(op + 32) == <u8>Select.Maglev && askedSize >= 2 && !isPrime(askedSize)) return CommitResult.BadOp;
  let e = svcFind(g, addr, port, proto);
  if (e != 0) {
    svcFreeStorage(g, e);
  } else {
    const countAt = g + countFieldOf(port, proto), count = load<u32>(countAt);
    const all = load<u32>(g + H_SVC_COUNT) + load<u32>(g + H_MARKER_COUNT);
    if (count >= svcMax || all * 2 >= svcCap) return CommitResult.ServicesFull;
    const h = svcHash(addr, port, proto), mask = svcCap - 1;
    let b = h & mask;
    while (load<u8>(g + offSvc + <usize>b * SVC + S_USED) != 0) b = (b + 1) & mask;
    e = g + offSvc + <usize>b * SVC;
    addrCopy(e + S_ADDR, addr);
    store<u16>(e + S_PORT, <u16>port);
    store<u8>(e + S_PROTO, <u8>proto);
    store<u8>(e + S_USED, 1);
    store<u32>(e + S_HASH, h);
    store<u32>(countAt, count + 1);
  }
  store<u8>(e + S_KIND, load<u8>(op + 27));
  store<u32>(e + S_ID, load<u32>(op + 28));
  store<u8>(e + S_SELECT, load<u8>(op + 32));
  store<u8>(e + S_FLAGS, load<u8>(op + 33));
  store<u32>(e + S_AFFINITY, load<u32>(op + 36));
  store<u32>(e + S_COUNT, n);
  store<u32>(e + S_ELIGIBLE, eligible);
  store<u32>(e + S_BACKENDS, 0); store<u32>(e + S_BE_BYTES, 0);
  store<u32>(e + S_MAGLEV, 0); store<u32>(e + S_MG_BYTES, 0); store<u32>(e + S_MAGLEV_SIZE, 0);
  if (n + ranges > 0) {
    const bytes = (n + ranges) * BE;
    const off = arenaAlloc(g, bytes, H_BE_BUMP, H_BE_FREE, offBe, beArena);
    if (off == 0) { svcDeleteEntry(g, e); return CommitResult.BackendsFull; }
    store<u32>(e + S_BACKENDS, off); store<u32>(e + S_BE_BYTES, bytes);
    const bl = g + <usize>off - 1;
    for (let i: u32 = 0; i < n; i++) {
      const src = op + OP_SERVICE_HEAD + <usize>i * OP_BACKEND_SIZE, dst = bl + <usize>i * BE;
      addrCopy(dst + B_ADDR, src);
      store<u16>(dst + B_PORT, <u16>ld16(src + 16));
      store<u16>(dst + B_PORT + 2, <u16>ld16(src + 18));
    }
    for (let i: u32 = 0; i < ranges; i++) {
      const src = rangesAt + <usize>i * OP_RANGE_SIZE, dst = bl + <usize>(n + i) * BE;
      addrCopy(dst + B_ADDR, src);
      store<u8>(dst + B_RANGE_LEN, <u8>ld8(src + 16));
    }
  }
  if (load<u8>(op + 32) == <u8>Select.Maglev && eligible > 0) {
    const m = maglevSizeFor(eligible, load<u32>(op + 40)), bytes = m * 2;
    const off = arenaAlloc(g, bytes, H_MG_BUMP, H_MG_FREE, offMg, mgArena);
    if (off == 0) { svcDeleteEntry(g, e); return CommitResult.BackendsFull; }
    store<u32>(e + S_MAGLEV, off); store<u32>(e + S_MG_BYTES, bytes); store<u32>(e + S_MAGLEV_SIZE, m);
    maglevFill(g + <usize>off - 1, m, g + <usize>load<u32>(e + S_BACKENDS) - 1, eligible);
  }
  return CommitResult.Ok;
}

function svcDeleteEntry(g: usize, e: usize): void {
  const countAt = g + countFieldOf(<u32>load<u16>(e + S_PORT), <u32>load<u8>(e + S_PROTO));
  svcFreeStorage(g, e);
  svcRemoveSlot(g, e);
  store<u32>(countAt, load<u32>(countAt) - 1);
}

/** The header field that counts entries of this key: an echo marker (port 0, protocol 0) or a port entry. */
@inline function countFieldOf(port: u32, proto: u32): usize {
  return port == 0 && proto == 0 ? H_MARKER_COUNT : H_SVC_COUNT;
}

/** The address of backend i of entry e (in the generation that holds e). */
@inline export function svcBackend(g: usize, e: usize, i: u32): usize {
  return g + <usize>load<u32>(e + S_BACKENDS) - 1 + <usize>i * BE;
}
/** The entry's source ranges: 0 when it takes every source. */
@inline export function svcRangeCount(e: usize): u32 {
  return load<u32>(e + S_BE_BYTES) / BE - load<u32>(e + S_COUNT);
}

/** May a new flow from `src` (16 bytes) use entry e: it has no source ranges, or one holds src.
 *  O(ranges), and only for a new flow. */
export function svcSourceAllowed(g: usize, e: usize, src: usize): bool {
  const r = svcRangeCount(e);
  if (r == 0) return true;
  const first = svcBackend(g, e, load<u32>(e + S_COUNT));
  for (let i: u32 = 0; i < r; i++) {
    const range = first + <usize>i * BE;
    if (addrInPrefix(src, range + B_ADDR, <u32>load<u8>(range + B_RANGE_LEN))) return true;
  }
  return false;
}
/** Maglev cell for hash h: the index of the chosen eligible backend. */
@inline export function svcMaglevPick(g: usize, e: usize, h: u32): u32 {
  const m = load<u32>(e + S_MAGLEV_SIZE);
  return <u32>load<u16>(g + <usize>load<u32>(e + S_MAGLEV) - 1 + (<usize>(h % m) << 1));
}

// ── routes: longest prefix match by hashing per configured prefix length ────────────────

@inline function routeHash(prefix: usize, len: u32): u32 { return hashAddrWord(prefix, <u64>len, 0x7007e); }

const MASKED: usize = memory.data(16, 16);

/** The route entry for the longest prefix holding addr in generation g, or 0. */
export function routeLookup(g: usize, addr: usize): usize {
  const nl = load<u32>(g + H_NLENS), mask = routeCap - 1;
  for (let i: u32 = 0; i < nl; i++) {
    const len = <u32>load<u8>(g + H_LENS + i);
    addrMask(MASKED, addr, len);
    const h = routeHash(MASKED, len);
    let b = h & mask;
    while (true) {
      const e = g + offRoute + <usize>b * ROUTE;
      if (load<u8>(e + R_USED) == 0) break;
      if (load<u32>(e + R_HASH) == h && <u32>load<u8>(e + R_LEN) == len && addrEq(e + R_PREFIX, MASKED)) return e;
      b = (b + 1) & mask;
    }
  }
  return 0;
}

function routeFindExact(g: usize, prefix: usize, len: u32): usize {
  const h = routeHash(prefix, len), mask = routeCap - 1;
  let b = h & mask;
  while (true) {
    const e = g + offRoute + <usize>b * ROUTE;
    if (load<u8>(e + R_USED) == 0) return 0;
    if (load<u32>(e + R_HASH) == h && <u32>load<u8>(e + R_LEN) == len && addrEq(e + R_PREFIX, prefix)) return e;
    b = (b + 1) & mask;
  }
}

function rebuildLens(g: usize): void {
  let n: u32 = 0;
  for (let len: i32 = 128; len >= 0; len--) {
    if (load<u32>(g + H_LEN_COUNT + (<usize>len << 2)) != 0) { store<u8>(g + H_LENS + n, <u8>len); n++; }
  }
  store<u32>(g + H_NLENS, n);
}

@inline function peerHash(ip: u32): u32 { return finish(mix(0x9ee7, <u64>ip)); }

function peerAdjust(g: usize, ip: u32, delta: i32): bool {
  if (ip == 0) return true;
  const mask = peerCap - 1;
  let b = peerHash(ip) & mask;
  while (true) {
    const e = g + offPeer + <usize>b * PEER;
    if (load<u8>(e + P_USED) == 0) {
      if (delta < 0) return true;
      if (load<u32>(g + H_PEER_COUNT) * 2 >= peerCap) return false;
      store<u32>(e + P_IP, ip); store<u32>(e + P_REFS, 1); store<u8>(e + P_USED, 1);
      store<u32>(e + P_HASH, peerHash(ip));
      store<u32>(g + H_PEER_COUNT, load<u32>(g + H_PEER_COUNT) + 1);
      return true;
    }
    if (load<u32>(e + P_IP) == ip) {
      const refs = <i32>load<u32>(e + P_REFS) + delta;
      if (refs > 0) { store<u32>(e + P_REFS, <u32>refs); return true; }
      shiftDelete(g + offPeer, peerCap, PEER, P_HASH, P_USED, b);
      store<u32>(g + H_PEER_COUNT, load<u32>(g + H_PEER_COUNT) - 1);
      return true;
    }
    b = (b + 1) & mask;
  }
}

/** Is ip (host order) the underlay address of a known node? */
export function peerKnown(g: usize, ip: u32): bool {
  const mask = peerCap - 1;
  let b = peerHash(ip) & mask;
  while (true) {
    const e = g + offPeer + <usize>b * PEER;
    if (load<u8>(e + P_USED) == 0) return false;
    if (load<u32>(e + P_IP) == ip) return true;
    b = (b + 1) & mask;
  }
}

function routeDelete(g: usize, e: usize): void {
  const tbl = g + offRoute, len = <u32>load<u8>(e + R_LEN);
  peerAdjust(g, load<u32>(e + R_UNDERLAY), -1);
  const lc = g + H_LEN_COUNT + (<usize>len << 2);
  store<u32>(lc, load<u32>(lc) - 1);
  shiftDelete(tbl, routeCap, ROUTE, R_HASH, R_USED, <u32>((e - tbl) / ROUTE));
  store<u32>(g + H_ROUTE_COUNT, load<u32>(g + H_ROUTE_COUNT) - 1);
  rebuildLens(g);
}

function routeUpsert(g: usize, op: usize, size: u32): CommitResult {
  // op: 8 prefix16 | 24 len u8 | 25 kind u8 | 26 nodeId u16 | 28 underlay u32 (host order) | 32 mac 6
  if (size < 40) return CommitResult.BadOp;
  const len = ld8(op + 24);
  if (len > 128) return CommitResult.BadOp;
  addrMask(MASKED, op + 8, len);
  let e = routeFindExact(g, MASKED, len);
  if (e != 0) routeDelete(g, e);
  const routes = load<u32>(g + H_ROUTE_COUNT);
  if (routes >= routeMax || routes * 2 + 2 >= routeCap) return CommitResult.RoutesFull;
  const underlay = load<u32>(op + 28);
  if (!peerAdjust(g, underlay, 1)) return CommitResult.RoutesFull;
  const h = routeHash(MASKED, len), mask = routeCap - 1;
  let b = h & mask;
  while (load<u8>(g + offRoute + <usize>b * ROUTE + R_USED) != 0) b = (b + 1) & mask;
  e = g + offRoute + <usize>b * ROUTE;
  addrCopy(e + R_PREFIX, MASKED);
  store<u8>(e + R_LEN, <u8>len);
  store<u8>(e + R_KIND, load<u8>(op + 25));
  store<u16>(e + R_NODE, load<u16>(op + 26));
  store<u32>(e + R_UNDERLAY, underlay);
  memory.copy(e + R_MAC, op + 32, 6);
  store<u8>(e + R_USED, 1);
  store<u32>(e + R_HASH, h);
  store<u32>(g + H_ROUTE_COUNT, load<u32>(g + H_ROUTE_COUNT) + 1);
  const lc = g + H_LEN_COUNT + (<usize>len << 2);
  store<u32>(lc, load<u32>(lc) + 1);
  rebuildLens(g);
  return CommitResult.Ok;
}

// ── local addresses (a handful: linear is O(1) here, bounded by LOCAL_CAP) ───────────────

export function localHas(g: usize, addr: usize): bool {
  const n = load<u32>(g + H_LOCAL_COUNT);
  for (let i: u32 = 0; i < n; i++) if (addrEq(g + offLocal + <usize>i * LOCAL, addr)) return true;
  return false;
}

function localAdd(g: usize, addr: usize): CommitResult {
  if (localHas(g, addr)) return CommitResult.Ok;
  const n = load<u32>(g + H_LOCAL_COUNT);
  if (n >= LOCAL_CAP) return CommitResult.LocalAddrsFull;
  addrCopy(g + offLocal + <usize>n * LOCAL, addr);
  store<u8>(g + offLocal + <usize>n * LOCAL + L_USED, 1);
  store<u32>(g + H_LOCAL_COUNT, n + 1);
  return CommitResult.Ok;
}

function localDelete(g: usize, addr: usize): void {
  const n = load<u32>(g + H_LOCAL_COUNT);
  for (let i: u32 = 0; i < n; i++) {
    const e = g + offLocal + <usize>i * LOCAL;
    if (addrEq(e, addr)) {
      memory.copy(e, g + offLocal + <usize>(n - 1) * LOCAL, LOCAL);
      memory.fill(g + offLocal + <usize>(n - 1) * LOCAL, 0, LOCAL);
      store<u32>(g + H_LOCAL_COUNT, n - 1);
      return;
    }
  }
}

function genClear(g: usize): void { memory.fill(g, 0, genSize); }

// ── sizing: what a commit may need, and moving both copies to a bigger region ───────────────

// What the staged ops could need at most, set by scanNeeds: entries and routes (existing ones plus
// every upsert), arena bytes (what the arenas hold plus a block per upsert), the largest eligible
// count (the Maglev scratch) and the highest service id + 1 (the per-service counters).
let needSvc: u32 = 0, needRoutes: u32 = 0, needScratch: u32 = 0, needIds: u32 = 0;
let needBe: u64 = 0, needMg: u64 = 0;

@inline function sizeClass(bytes: u64): u64 { return bytes == 0 ? 0 : bytes <= 16 ? 16 : <u64>1 << (64 - clz<u64>(bytes - 1)); }

function scanNeeds(g: usize, ops: usize, bytes: u32): void {
  needSvc = load<u32>(g + H_SVC_COUNT) + load<u32>(g + H_MARKER_COUNT); needRoutes = load<u32>(g + H_ROUTE_COUNT);
  needBe = <u64>load<u32>(g + H_BE_BUMP); needMg = <u64>load<u32>(g + H_MG_BUMP);
  needScratch = 0; needIds = 0;
  let p: u32 = 0;
  while (p + 8 <= bytes) {
    const op = ops + p, code = ld8(op), size = load<u32>(op + 4);
    // a malformed op is applyOps' to refuse (BadOp); the scan stops there
    if (code == Op.End || size < 8 || (size & 3) != 0 || p + size > bytes) return;
    if (code == Op.Clear) {
      needSvc = 0; needRoutes = 0; needBe = 0; needMg = 0;
    } else if (code == Op.UpsertService && size >= OP_SERVICE_HEAD) {
      const n = load<u32>(op + 44), eligible = load<u32>(op + 48), id = load<u32>(op + 28);
      const ranges = <u32>load<u16>(op + OP_SERVICE_RANGES);
      if (<u64>n + <u64>ranges <= <u64>maxBackendsPerService && eligible <= n) {
        needSvc++;
        needBe += sizeClass(<u64>(n + ranges) * BE);
        if (load<u8>(op + 32) == <u8>Select.Maglev && eligible > 0) needMg += sizeClass(<u64>maglevSizeFor(eligible, load<u32>(op + 40)) * 2);
        if (eligible > needScratch) needScratch = eligible;
        if (id < 0xffffffff && id + 1 > needIds) needIds = id + 1;
      }
    } else if (code == Op.UpsertRoute) {
      needRoutes++;
    }
    p += size;
  }
}

/** The highest service id + 1 the last commit's ops named (the host's per-service counters follow it). */
export function genNeededIds(): u32 { return needIds; }

/** A new arena size for `need` bytes: half as much again, at least twice the current one. */
function arenaFor(need: u64, cur: u32, max: u32): u32 {
  let want = need + (need >> 1);
  if (want < <u64>cur * 2) want = <u64>cur * 2;
  want = (want + 4095) & ~(<u64>4095);
  return want > <u64>max ? max : <u32>want;
}

/** Rebuilds both copies into one new region laid out for (sc, rc, be, mg): the live copy's entries
 *  re-inserted, their backend lists and Maglev tables copied into compacted arenas, then copied to
 *  the other half. All or nothing: false, with the copies as they were, when memory is out. */
function genResize(sc: u32, rc: u32, be: u32, mg: u32): bool {
  const oldG = activeGen(), oldBase = gens, oldSize = genSize;
  const oSvcCap = svcCap, oRouteCap = routeCap, oPeerCap = peerCap, oBe = beArena, oMg = mgArena;
  const oOffSvc = offSvc, oOffRoute = offRoute, oOffLocal = offLocal, oOffPeer = offPeer;
  setLayout(sc, rc, be, mg);
  const ng = regionAlloc(genSize * 2, true);
  if (ng == 0) { setLayout(oSvcCap, oRouteCap, oBe, oMg); return false; }
  memory.copy(ng, oldG, HDR);
  store<u32>(ng + H_BE_BUMP, 0); store<u32>(ng + H_MG_BUMP, 0);
  memory.fill(ng + H_BE_FREE, 0, 24 * 4); memory.fill(ng + H_MG_FREE, 0, 24 * 4);
  for (let i: u32 = 0; i < oSvcCap; i++) {
    const e = oldG + oOffSvc + <usize>i * SVC;
    if (load<u8>(e + S_USED) == 0) continue;
    let b = load<u32>(e + S_HASH) & (svcCap - 1);
    while (load<u8>(ng + offSvc + <usize>b * SVC + S_USED) != 0) b = (b + 1) & (svcCap - 1);
    const ne = ng + offSvc + <usize>b * SVC;
    memory.copy(ne, e, SVC);
    if (!moveBlock(ng, ne, oldG, S_BACKENDS, S_BE_BYTES, H_BE_BUMP, H_BE_FREE, offBe, beArena) ||
        !moveBlock(ng, ne, oldG, S_MAGLEV, S_MG_BYTES, H_MG_BUMP, H_MG_FREE, offMg, mgArena)) {
      // sized from the live copy's own use, so this cannot happen; refuse rather than lose an entry
      regionFree(ng, genSize * 2);
      setLayout(oSvcCap, oRouteCap, oBe, oMg);
      return false;
    }
  }
  for (let i: u32 = 0; i < oRouteCap; i++) {
    const e = oldG + oOffRoute + <usize>i * ROUTE;
    if (load<u8>(e + R_USED) == 0) continue;
    let b = load<u32>(e + R_HASH) & (routeCap - 1);
    while (load<u8>(ng + offRoute + <usize>b * ROUTE + R_USED) != 0) b = (b + 1) & (routeCap - 1);
    memory.copy(ng + offRoute + <usize>b * ROUTE, e, ROUTE);
  }
  for (let i: u32 = 0; i < oPeerCap; i++) {
    const e = oldG + oOffPeer + <usize>i * PEER;
    if (load<u8>(e + P_USED) == 0) continue;
    let b = load<u32>(e + P_HASH) & (peerCap - 1);
    while (load<u8>(ng + offPeer + <usize>b * PEER + P_USED) != 0) b = (b + 1) & (peerCap - 1);
    memory.copy(ng + offPeer + <usize>b * PEER, e, PEER);
  }
  memory.copy(ng + offLocal, oldG + oOffLocal, <usize>LOCAL_CAP * LOCAL);
  memory.copy(ng + genSize, ng, genSize);
  gens = ng;
  active = 0;
  regionFree(oldBase, oldSize * 2);
  return true;
}

/** Copies the arena block entry ne names (offset at offAt, bytes at bytesAt, in copy oldG) into
 *  copy ng's arena and points ne at it. */
function moveBlock(ng: usize, ne: usize, oldG: usize, offAt: usize, bytesAt: usize, bumpAt: usize, freeAt: usize, base: usize, size: u32): bool {
  const off = load<u32>(ne + offAt), bytes = load<u32>(ne + bytesAt);
  if (off == 0) return true;
  const to = arenaAlloc(ng, bytes, bumpAt, freeAt, base, size);
  if (to == 0) return false;
  memory.copy(ng + <usize>to - 1, oldG + <usize>off - 1, bytes);
  store<u32>(ne + offAt, to);
  return true;
}

/** Makes room for what the staged ops may need. False when a table had to grow and memory was out;
 *  the ops may still fit (the estimate counts every upsert as new). */
function makeRoom(ops: usize, bytes: u32): bool {
  scanNeeds(activeGen(), ops, bytes);
  const sc = atMost(svcCapFor(needSvc), svcCapMax), rc = atMost(routeCapFor(needRoutes), routeCapMax);
  const be = needBe > <u64>beArena ? arenaFor(needBe, beArena, beArenaMax) : beArena;
  const mg = needMg > <u64>mgArena ? arenaFor(needMg, mgArena, mgArenaMax) : mgArena;
  let ok = true;
  if (sc > svcCap || rc > routeCap || be > beArena || mg > mgArena) {
    ok = genResize(sc > svcCap ? sc : svcCap, rc > routeCap ? rc : routeCap, be, mg);
  }
  if (!ensureScratch(needScratch)) ok = false;
  return ok;
}

// ── commit ─────────────────────────────────────────────────────────────────────────────

function applyOps(g: usize, ops: usize, bytes: u32): CommitResult {
  let p: u32 = 0;
  while (p + 8 <= bytes) {
    const op = ops + p, code = ld8(op), size = load<u32>(op + 4);
    if (code == Op.End) return CommitResult.Ok;
    if (size < 8 || (size & 3) != 0 || p + size > bytes) return CommitResult.BadOp;
    let r = CommitResult.Ok;
    switch (code) {
      case Op.UpsertService: r = svcUpsert(g, op, size); break;
      case Op.DeleteService: {
        if (size < 28) return CommitResult.BadOp;
        const e = svcFind(g, op + 8, <u32>ld16(op + 24), ld8(op + 26));
        if (e != 0) svcDeleteEntry(g, e);
        break;
      }
      case Op.UpsertRoute: r = routeUpsert(g, op, size); break;
      case Op.DeleteRoute: {
        if (size < 28) return CommitResult.BadOp;
        const len = ld8(op + 24);
        if (len > 128) return CommitResult.BadOp;
        addrMask(MASKED, op + 8, len);
        const e = routeFindExact(g, MASKED, len);
        if (e != 0) routeDelete(g, e);
        break;
      }
      case Op.AddLocalAddr: if (size < 24) return CommitResult.BadOp; r = localAdd(g, op + 8); break;
      case Op.DeleteLocalAddr: if (size < 24) return CommitResult.BadOp; localDelete(g, op + 8); break;
      case Op.Clear: genClear(g); break;
      default: return CommitResult.BadOp;
    }
    if (r != CommitResult.Ok) return r;
    p += size;
  }
  return CommitResult.Ok;
}

/** Applies `bytes` of staged ops to both copies, growing them first when the ops need more room;
 *  on failure nothing changes. OutOfMemory: the ops did not fit and the copies could not grow. */
export function genCommit(ops: usize, bytes: u32): CommitResult {
  const roomy = makeRoom(ops, bytes);
  // ensureScratch failed: a Maglev table of this size cannot be filled
  if (needScratch > scratchCap) return CommitResult.OutOfMemory;
  const idle = gens + <usize>(active ^ 1) * genSize, live = activeGen();
  const r = applyOps(idle, ops, bytes);
  if (r != CommitResult.Ok) {
    memory.copy(idle, live, genSize);
    const full = r == CommitResult.ServicesFull || r == CommitResult.BackendsFull || r == CommitResult.RoutesFull;
    return full && !roomy ? CommitResult.OutOfMemory : r;
  }
  active ^= 1;
  generation++;
  // Replaying the same ops on the old copy cannot fail: it held the same state as the idle one.
  applyOps(live, ops, bytes);
  return CommitResult.Ok;
}

/** Port entries (echo markers not counted: genMarkerCount). */
export function genServiceCount(): u32 { return load<u32>(activeGen() + H_SVC_COUNT); }
export function genMarkerCount(): u32 { return load<u32>(activeGen() + H_MARKER_COUNT); }
export function genRouteCount(): u32 { return load<u32>(activeGen() + H_ROUTE_COUNT); }
/** Bytes of one copy (both take twice this). */
export function genBytes(): usize { return genSize; }

/** 0 when both copies are identical and every used entry is findable; else a violation code. */
export function genCheck(): u32 {
  const a = gens, b = gens + genSize;
  if (memory.compare(a, b, genSize) != 0) return 10;
  const g = activeGen();
  let n: u32 = 0;
  for (let i: u32 = 0; i < svcCap; i++) {
    const e = g + offSvc + <usize>i * SVC;
    if (load<u8>(e + S_USED) == 0) continue;
    n++;
    if (svcFind(g, e + S_ADDR, <u32>load<u16>(e + S_PORT), <u32>load<u8>(e + S_PROTO)) != e) return 11;
    if (load<u32>(e + S_ELIGIBLE) > load<u32>(e + S_COUNT)) return 12;
  }
  if (n != load<u32>(g + H_SVC_COUNT) + load<u32>(g + H_MARKER_COUNT)) return 13;
  return 0;
}
