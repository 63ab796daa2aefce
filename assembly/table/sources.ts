// Flows per source address, for a fair share of a full flow table (table/conntrack.ts's evictOne):
// each source's flow count and its flows least recently seen first; the heaviest source in O(1).
import { addrCopy, addrEq } from "../mem";
import { hashAddrWord } from "./hash";
import { regionAlloc, regionFree } from "./region";
import { bucketPut, rehash } from "./buckets";
import { CT_F_SRC, CT_FLAGS, CT_SOURCE, CT_SRC_PREV, CT_SRC_NEXT, FlowFlag } from "../abi";
import { rec } from "./conntrack";

let srcKey: u64 = 0;          // the flow index's per-node key (hash flooding)
export function srcSetKey(key: u64): void { srcKey = key; }

// An entry per source address with live flows, SRC_SIZE bytes at srcEntry(e), e = entry + 1:
//   0 16 addr   the flows' forward source, as in the record (IPv4-mapped for IPv4)
//  16 u32 count its live flows       20 u32 bprev  24 u32 bnext: the list of sources with this count
//  28 u32 head  32 u32 tail: its flows, least recently seen first (idx + 1, through CT_SRC_PREV/NEXT)
// Free entries chain through bnext. There are never more sources than flows, so the entries are as
// many as the records and grow with them (srcGrow, from ctGrow: between batches). The index holds
// u64 buckets (hash, entry << 32) at load <= 0.5, linear probing and backward-shift deletion as the
// flow index does; BYCOUNT[n] is the first source holding n flows.
const SRC_SIZE: usize = 40;
const SRC_COUNT: usize = 16;
const SRC_BPREV: usize = 20;
const SRC_BNEXT: usize = 24;
export const SRC_HEAD: usize = 28;
const SRC_TAIL: usize = 32;
let srcEntries: usize = 0;
let srcIndex: usize = 0;
let srcMask: u32 = 0;
let byCount: usize = 0;       // u32 per count 0..capacity
let srcCap: u32 = 0;
let srcFresh: u32 = 0;        // entries [0, srcFresh) were used at least once
let srcFree: u32 = 0;         // first free entry below srcFresh (e), 0: none
export let srcLive: u32 = 0;         // sources with at least one flow
let srcMax: u32 = 0;          // the most flows one source holds

@inline export function srcEntry(e: u32): usize { return srcEntries + <usize>(e - 1) * SRC_SIZE; }
@inline export function srcCount(e: u32): u32 { return load<u32>(srcEntry(e) + SRC_COUNT); }
@inline function srcHash(addr: usize): u32 { return hashAddrWord(addr, 0x5352, srcKey); }
@inline function srcBytes(cap: u32): usize { return <usize>cap * SRC_SIZE; }
@inline function srcIndexBytes(cap: u32): usize { return <usize>cap * 2 * 8; }
@inline function byCountBytes(cap: u32): usize { return (<usize>cap + 1) * 4; }

/** Lays the source table out for `cap` flows; false when memory is out. */
export function srcLayout(cap: u32): bool {
  srcEntries = regionAlloc(srcBytes(cap), false);
  srcIndex = regionAlloc(srcIndexBytes(cap), true);
  byCount = regionAlloc(byCountBytes(cap), true);
  if (srcEntries == 0 || srcIndex == 0 || byCount == 0) return false;
  srcCap = cap; srcMask = cap * 2 - 1;
  srcFresh = 0; srcFree = 0; srcLive = 0; srcMax = 0;
  return true;
}

/** Moves the source table to room for `cap` flows (entries copied, index rebuilt); all or nothing. */
export function srcGrow(cap: u32): bool {
  const ne = regionAlloc(srcBytes(cap), false);
  const ni = ne != 0 ? regionAlloc(srcIndexBytes(cap), true) : 0;
  const nb = ni != 0 ? regionAlloc(byCountBytes(cap), true) : 0;
  if (nb == 0) {
    if (ni != 0) regionFree(ni, srcIndexBytes(cap));
    if (ne != 0) regionFree(ne, srcBytes(cap));
    return false;
  }
  memory.copy(ne, srcEntries, <usize>srcFresh * SRC_SIZE);
  memory.copy(nb, byCount, byCountBytes(srcCap));
  regionFree(srcEntries, srcBytes(srcCap)); regionFree(byCount, byCountBytes(srcCap));
  srcEntries = ne; byCount = nb;
  rehash(srcIndex, srcMask, ni, cap * 2 - 1);
  regionFree(srcIndex, srcIndexBytes(srcCap));
  srcIndex = ni; srcMask = cap * 2 - 1;
  srcCap = cap;
  return true;
}

@inline function srcIndexPut(x: u64): void { bucketPut(srcIndex, srcMask, x); }

/** The entry (e) of the source with this address, 0 when it holds no flow. */
function srcFind(addr: usize): u32 {
  const h = srcHash(addr);
  let b = h & srcMask;
  while (true) {
    const x = load<u64>(srcIndex + (<usize>b << 3));
    if (x == 0) return 0;
    if (<u32>x == h && addrEq(srcEntry(<u32>(x >> 32)), addr)) return <u32>(x >> 32);
    b = (b + 1) & srcMask;
  }
}

function srcIndexRemove(e: u32): void {
  let b = srcHash(srcEntry(e)) & srcMask;
  while (<u32>(load<u64>(srcIndex + (<usize>b << 3)) >> 32) != e) b = (b + 1) & srcMask;
  let hole = b, j = (b + 1) & srcMask;
  while (true) {
    const x = load<u64>(srcIndex + (<usize>j << 3));
    if (x == 0) break;
    if ((((j - (<u32>x & srcMask)) & srcMask)) >= ((j - hole) & srcMask)) { store<u64>(srcIndex + (<usize>hole << 3), x); hole = j; }
    j = (j + 1) & srcMask;
  }
  store<u64>(srcIndex + (<usize>hole << 3), 0);
}

/** Takes source e out of the list of its count. */
function bucketUnlink(e: u32): void {
  const s = srcEntry(e), n = load<u32>(s + SRC_COUNT);
  const prev = load<u32>(s + SRC_BPREV), next = load<u32>(s + SRC_BNEXT);
  if (prev != 0) store<u32>(srcEntry(prev) + SRC_BNEXT, next); else store<u32>(byCount + (<usize>n << 2), next);
  if (next != 0) store<u32>(srcEntry(next) + SRC_BPREV, prev);
}

/** Sets source e's count to n and puts it in that count's list (n > 0). */
function bucketLink(e: u32, n: u32): void {
  const s = srcEntry(e), first = load<u32>(byCount + (<usize>n << 2));
  store<u32>(s + SRC_COUNT, n);
  store<u32>(s + SRC_BPREV, 0);
  store<u32>(s + SRC_BNEXT, first);
  if (first != 0) store<u32>(srcEntry(first) + SRC_BPREV, e);
  store<u32>(byCount + (<usize>n << 2), e);
}

/** The entry of a source holding the most flows, 0 when the table is empty. */
@inline export function srcHeaviest(): u32 { return srcMax == 0 ? 0 : load<u32>(byCount + (<usize>srcMax << 2)); }

/** Counts flow idx for its forward source and appends it to that source's list. */
export function srcAdd(idx: u32): void {
  const r = rec(idx);
  let e = srcFind(r + CT_F_SRC);
  if (e == 0) {
    if (srcFree != 0) { e = srcFree; srcFree = load<u32>(srcEntry(e) + SRC_BNEXT); } else e = ++srcFresh;
    const s = srcEntry(e);
    addrCopy(s, r + CT_F_SRC);
    store<u32>(s + SRC_HEAD, 0); store<u32>(s + SRC_TAIL, 0);
    srcIndexPut((<u64>e << 32) | <u64>srcHash(s));
    srcLive++;
    bucketLink(e, 1);
  } else {
    const n = srcCount(e) + 1;
    bucketUnlink(e);
    bucketLink(e, n);
  }
  if (srcCount(e) > srcMax) srcMax = srcCount(e);
  store<u32>(r + CT_SOURCE, e);
  srcAppend(e, idx);
}

function srcAppend(e: u32, idx: u32): void {
  const s = srcEntry(e), r = rec(idx), tail = load<u32>(s + SRC_TAIL);
  store<u32>(r + CT_SRC_PREV, tail);
  store<u32>(r + CT_SRC_NEXT, 0);
  if (tail != 0) store<u32>(rec(tail - 1) + CT_SRC_NEXT, idx + 1); else store<u32>(s + SRC_HEAD, idx + 1);
  store<u32>(s + SRC_TAIL, idx + 1);
}

function srcUnlink(e: u32, idx: u32): void {
  const s = srcEntry(e), r = rec(idx);
  const prev = load<u32>(r + CT_SRC_PREV), next = load<u32>(r + CT_SRC_NEXT);
  if (prev != 0) store<u32>(rec(prev - 1) + CT_SRC_NEXT, next); else store<u32>(s + SRC_HEAD, next);
  if (next != 0) store<u32>(rec(next - 1) + CT_SRC_PREV, prev); else store<u32>(s + SRC_TAIL, prev);
}

/** Flow idx was seen now: the last of its source's list. */
export function srcToTail(idx: u32): void {
  const e = load<u32>(rec(idx) + CT_SOURCE);
  if (load<u32>(srcEntry(e) + SRC_TAIL) == idx + 1) return;
  srcUnlink(e, idx);
  srcAppend(e, idx);
}

/** Uncounts flow idx; a source left with none leaves the table. */
export function srcRemove(idx: u32): void {
  const e = load<u32>(rec(idx) + CT_SOURCE), n = srcCount(e);
  srcUnlink(e, idx);
  bucketUnlink(e);
  // counts move by one: when the last source at the top goes down, the top is one lower
  if (n == srcMax && load<u32>(byCount + (<usize>n << 2)) == 0) srcMax = n - 1;
  if (n > 1) { bucketLink(e, n - 1); return; }
  srcIndexRemove(e);
  store<u32>(srcEntry(e) + SRC_BNEXT, srcFree);
  srcFree = e;
  srcLive--;
}

/** The source table agrees with the flows: each flow is on its source's list and counted there,
 *  each live source is findable by its address, in the list of its count, and no count passes
 *  srcMax, whose list is not empty. 0 when all hold, else 21-27 (table/generation.ts's genCheck
 *  has 10-13). */
export function srcCheck(used: u32): u32 {
  let flows: u64 = 0, live: u32 = 0;
  const free = srcFreeCount();
  for (let e: u32 = 1; e <= srcFresh; e++) {
    const s = srcEntry(e);
    if (srcFind(s) != e) continue;   // a free entry
    live++;
    const n = srcCount(e);
    if (n == 0 || n > srcMax) return 21;
    let f = load<u32>(s + SRC_HEAD), k: u32 = 0, prev: u32 = 0;
    while (f != 0 && k <= n) {
      const r = rec(f - 1);
      if ((load<u8>(r + CT_FLAGS) & FlowFlag.USED) == 0 || load<u32>(r + CT_SOURCE) != e || !addrEq(r + CT_F_SRC, s)) return 22;
      if (load<u32>(r + CT_SRC_PREV) != prev) return 22;
      prev = f; f = load<u32>(r + CT_SRC_NEXT); k++;
    }
    if (k != n || load<u32>(s + SRC_TAIL) != prev) return 23;
    let b = load<u32>(byCount + (<usize>n << 2)), inList = false, guard: u32 = 0;
    while (b != 0 && guard <= srcFresh) { if (b == e) { inList = true; break; } b = load<u32>(srcEntry(b) + SRC_BNEXT); guard++; }
    if (!inList) return 24;
    flows += n;
  }
  if (flows != <u64>used) return 25;
  if (live != srcLive || live + free != srcFresh) return 26;
  if ((srcMax == 0) != (used == 0) || (srcMax != 0 && load<u32>(byCount + (<usize>srcMax << 2)) == 0)) return 27;
  return 0;
}

function srcFreeCount(): u32 {
  let n: u32 = 0, e = srcFree;
  while (e != 0 && n <= srcFresh) { n++; e = load<u32>(srcEntry(e) + SRC_BNEXT); }
  return n;
}

