// The tables a reload replaces: services, their backends and Maglev lookup tables, routes, the
// node's own addresses and the known peers. Two copies ("generations") live side by side; a commit
// applies the staged ops to the idle copy, flips one index, then replays them on the other copy
// (the left-right scheme), so a packet sees the old tables or the new ones, never half of each,
// and an update costs work proportional to what changed.
//
// Every pointer stored inside a generation is an offset from that generation's base, so the two
// copies are byte-identical after a commit and one memory.copy restores a copy after a failure.
//
// Where things lie in a copy: table/generation-layout.ts; growing the copies: table/generation-resize.ts;
// Maglev tables: table/maglev.ts.
import { addrCopy, addrEq, addrInPrefix, addrMask, ld8, ld16 } from "../mem";
import { hashAddrWord, mix, finish } from "./hash";
import { CommitResult, Op, Select, OP_SERVICE_HEAD, OP_SERVICE_RANGES, OP_BACKEND_SIZE, OP_RANGE_SIZE } from "../abi";
import { ensureScratch, isPrime, maglevFill, maglevSizeFor, scratchHolds } from "./maglev";
import { makeRoom, neededScratch } from "./generation-resize";
import {
  H_SVC_COUNT, H_ROUTE_COUNT, H_LOCAL_COUNT, H_PEER_COUNT, H_BE_BUMP, H_MG_BUMP, H_MARKER_COUNT, H_BE_FREE, H_MG_FREE,
  H_LEN_COUNT, H_LENS, H_NLENS, S_ADDR, S_PORT, S_PROTO, S_USED, S_KIND, S_SELECT, S_FLAGS, S_ID, S_AFFINITY,
  S_BACKENDS, S_COUNT, S_ELIGIBLE, S_MAGLEV, S_MAGLEV_SIZE, S_HASH, S_BE_BYTES, S_MG_BYTES, SVC, B_ADDR, B_PORT,
  B_RANGE_LEN, BE, R_PREFIX, R_LEN, R_KIND, R_NODE, R_UNDERLAY, R_MAC, R_USED, R_HASH, ROUTE, L_USED, LOCAL, LOCAL_CAP,
  P_IP, P_REFS, P_USED, P_HASH, PEER, gens, genSize, svcCap, routeCap, peerCap, offSvc, offRoute, offLocal, offPeer,
  offBe, offMg, beArena, mgArena, svcMax, routeMax, maxBackendsPerService, activeGen, idleGen, flipCopies, layoutInit,
  arenaAlloc, arenaFree,
} from "./generation-layout";

// what the pipeline reads of an entry, and of the copies
export {
  S_ADDR, S_PORT, S_PROTO, S_KIND, S_SELECT, S_FLAGS, S_ID, S_AFFINITY, S_BACKENDS, S_COUNT, S_ELIGIBLE, S_MAGLEV,
  S_MAGLEV_SIZE, B_ADDR, B_PORT, B_RANGE_LEN, BE, R_PREFIX, R_LEN, R_KIND, R_NODE, R_UNDERLAY, R_MAC,
  activeGen, generationNumber,
} from "./generation-layout";
export { maglevSizeFor } from "./maglev";
export { genNeededIds } from "./generation-resize";

/** Ceilings from init's config (0: none): service entries, backends over all services, routes,
 *  Maglev cells over all services. Lays out small empty copies; false when memory is out. */
export function genInit(maxServices: u32, maxBackends: u32, maxRoutes: u32, maglevCells: u32): bool {
  return layoutInit(maxServices, maxBackends, maxRoutes, maglevCells) && ensureScratch(64);
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

/** Deletes the route an op names (8 prefix16 | 24 len u8), leaving its masked prefix in MASKED;
 *  false when the length is over 128. */
function routeDeleteKey(g: usize, op: usize): bool {
  const len = ld8(op + 24);
  if (len > 128) return false;
  addrMask(MASKED, op + 8, len);
  const e = routeFindExact(g, MASKED, len);
  if (e != 0) routeDelete(g, e);
  return true;
}

function routeUpsert(g: usize, op: usize, size: u32): CommitResult {
  // op: 8 prefix16 | 24 len u8 | 25 kind u8 | 26 nodeId u16 | 28 underlay u32 (host order) | 32 mac 6
  if (size < 40 || !routeDeleteKey(g, op)) return CommitResult.BadOp;
  const len = ld8(op + 24);
  const routes = load<u32>(g + H_ROUTE_COUNT);
  if (routes >= routeMax || routes * 2 + 2 >= routeCap) return CommitResult.RoutesFull;
  const underlay = load<u32>(op + 28);
  if (!peerAdjust(g, underlay, 1)) return CommitResult.RoutesFull;
  const h = routeHash(MASKED, len), mask = routeCap - 1;
  let b = h & mask;
  while (load<u8>(g + offRoute + <usize>b * ROUTE + R_USED) != 0) b = (b + 1) & mask;
  const e = g + offRoute + <usize>b * ROUTE;
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
      case Op.DeleteRoute: if (size < 28 || !routeDeleteKey(g, op)) return CommitResult.BadOp; break;
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
  if (!scratchHolds(neededScratch())) return CommitResult.OutOfMemory;
  const idle = idleGen(), live = activeGen();
  const r = applyOps(idle, ops, bytes);
  if (r != CommitResult.Ok) {
    memory.copy(idle, live, genSize);
    const full = r == CommitResult.ServicesFull || r == CommitResult.BackendsFull || r == CommitResult.RoutesFull;
    return full && !roomy ? CommitResult.OutOfMemory : r;
  }
  flipCopies();
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
