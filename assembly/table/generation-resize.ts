// Sizing the two copies of the tables (table/generation.ts) for what is loaded: a commit first works
// out what its ops could need at most (scanNeeds) and, when that is more than the copies hold,
// rebuilds them into a bigger region (genResize: every entry re-inserted, backend lists and Maglev
// tables copied, the arenas compacted) before it applies the ops. Both happen inside commit(),
// between batches.
import { ld8 } from "../mem";
import { Op, Select, OP_SERVICE_HEAD, OP_SERVICE_RANGES } from "../abi";
import { regionAlloc, regionFree } from "./region";
import { ensureScratch, maglevSizeFor } from "./maglev";
import {
  H_SVC_COUNT, H_ROUTE_COUNT, H_BE_BUMP, H_MG_BUMP, H_MARKER_COUNT, H_BE_FREE, H_MG_FREE, HDR,
  S_USED, S_HASH, S_BACKENDS, S_BE_BYTES, S_MAGLEV, S_MG_BYTES, SVC, BE, R_USED, R_HASH, ROUTE, LOCAL, LOCAL_CAP,
  P_USED, P_HASH, PEER, gens, genSize, svcCap, routeCap, peerCap, offSvc, offRoute, offLocal, offPeer, offBe, offMg,
  beArena, mgArena, maxBackendsPerService, svcCapMax, routeCapMax, beArenaMax, mgArenaMax,
  svcCapFor, routeCapFor, atMost, setLayout, activeGen, adoptCopies, arenaAlloc,
} from "./generation-layout";

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
/** The most eligible backends one service of the last commit's ops has (the Maglev scratch it needs). */
export function neededScratch(): u32 { return needScratch; }

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
    const ne = reinsert(ng + offSvc, svcCap, SVC, S_HASH, S_USED, e);
    if (!moveBlock(ng, ne, oldG, S_BACKENDS, S_BE_BYTES, H_BE_BUMP, H_BE_FREE, offBe, beArena) ||
        !moveBlock(ng, ne, oldG, S_MAGLEV, S_MG_BYTES, H_MG_BUMP, H_MG_FREE, offMg, mgArena)) {
      // sized from the live copy's own use, so this cannot happen; refuse rather than lose an entry
      regionFree(ng, genSize * 2);
      setLayout(oSvcCap, oRouteCap, oBe, oMg);
      return false;
    }
  }
  reinsertAll(oldG + oOffRoute, oRouteCap, ng + offRoute, routeCap, ROUTE, R_HASH, R_USED);
  reinsertAll(oldG + oOffPeer, oPeerCap, ng + offPeer, peerCap, PEER, P_HASH, P_USED);
  memory.copy(ng + offLocal, oldG + oOffLocal, <usize>LOCAL_CAP * LOCAL);
  memory.copy(ng + genSize, ng, genSize);
  adoptCopies(ng);
  regionFree(oldBase, oldSize * 2);
  return true;
}

/** Copies entry e into its first free slot of a linear-probing table (`cap` entries of `size` bytes,
 *  the hash at `hashAt`, a zero byte at `usedAt` when free); the copy's address. */
function reinsert(tbl: usize, cap: u32, size: usize, hashAt: usize, usedAt: usize, e: usize): usize {
  const mask = cap - 1;
  let b = load<u32>(e + hashAt) & mask;
  while (load<u8>(tbl + <usize>b * size + usedAt) != 0) b = (b + 1) & mask;
  const ne = tbl + <usize>b * size;
  memory.copy(ne, e, size);
  return ne;
}

/** Every used entry of table `from` (fromCap entries) re-inserted into table `to` (toCap entries). */
function reinsertAll(from: usize, fromCap: u32, to: usize, toCap: u32, size: usize, hashAt: usize, usedAt: usize): void {
  for (let i: u32 = 0; i < fromCap; i++) {
    const e = from + <usize>i * size;
    if (load<u8>(e + usedAt) != 0) reinsert(to, toCap, size, hashAt, usedAt, e);
  }
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
export function makeRoom(ops: usize, bytes: u32): bool {
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
