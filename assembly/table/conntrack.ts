// Connection tracking: one record per flow, found from either direction through an open-addressing
// index (linear probing, backward-shift deletion: no tombstones, so lookups stay short forever).
// Records sit on LRU lists, one per timeout class, so every list is ordered by expiry time as
// well: the head of each list is the next to expire, and expiry and eviction are O(1).
// A full table evicts fairly (evictOne): each source address has an entry counting its flows and
// listing them least recently seen first, and a source holding more than the mean share gives up
// its own flow, so a flood from one pod turns over its own flows and no one else's (the kernel's
// early_drop takes only unassured flows; Cilium limits each endpoint). The sources are kept in one
// list per count, so the heaviest is found in O(1) (counts move by one).
import { addrCopy, addrEq } from "../mem";
import { hashTupleKeyed, pow2AtLeast } from "./hash";
import { regionAlloc, regionFree } from "./region";
import { bucketPut, rehash } from "./buckets";
import { count } from "../state";
import { srcAdd, srcCheck, srcCount, srcEntry, srcGrow, srcHeaviest, srcLayout, srcLive, srcRemove, srcSetKey, srcToTail, SRC_HEAD } from "./sources";
import {
  C_CT_EVICTED, C_CT_EXPIRED, C_CT_ENTRIES, CT_REC_SIZE, CT_F_SRC, CT_F_DST, CT_R_SRC, CT_R_DST, CT_F_SPORT, CT_F_DPORT,
  CT_R_SPORT, CT_R_DPORT, CT_PROTO, CT_STATE, CT_CLS, CT_FLAGS, CT_LAST, CT_SERVICE, CT_PREV, CT_NEXT, CT_GEN, CT_CREATED,
  CT_SOURCE, CT_SEQ, CT_SRC_PREV, CT_SRC_NEXT, C_CT_EVICTED_SHARE, C_CT_EVICTED_OLDEST,
  CT_CLASS_COUNT, CT_TIMEOUT_TCP_SYN_SEC, CT_TIMEOUT_TCP_ESTABLISHED_SEC, CT_TIMEOUT_TCP_CLOSING_SEC,
  CT_TIMEOUT_TCP_TIME_WAIT_SEC, CT_TIMEOUT_TCP_CLOSE_SEC, CT_TIMEOUT_UDP_SEC, CT_TIMEOUT_UDP_STREAM_SEC,
  CT_TIMEOUT_ICMP_SEC, CT_TIMEOUT_OFFLOADED_SEC, FlowFlag, CtClass, CtDir, CtState,
} from "../abi";

// The flow record's layout, FlowFlag, CtState, CtClass and the timeouts are the host's too: they
// live in assembly/abi.ts.
// CtClass → seconds, in class order
const TIMEOUTS: usize = memory.data<u32>([
  CT_TIMEOUT_TCP_SYN_SEC, CT_TIMEOUT_TCP_ESTABLISHED_SEC, CT_TIMEOUT_TCP_CLOSING_SEC, CT_TIMEOUT_TCP_TIME_WAIT_SEC,
  CT_TIMEOUT_TCP_CLOSE_SEC, CT_TIMEOUT_UDP_SEC, CT_TIMEOUT_UDP_STREAM_SEC, CT_TIMEOUT_ICMP_SEC, CT_TIMEOUT_OFFLOADED_SEC,
]);
/** Classes whose flows are "established": evicted only when nothing else can go. */
@inline function isEstablishedClass(c: CtClass): bool { return c == CtClass.TcpEstablished || c == CtClass.UdpStream; }

// A ref names one direction of one flow, (idx + 1) << 1 | dir, so that 0 means none: what the
// index holds and ctFind returns. Read it only through these.
@inline export function makeRef(idx: u32, dir: CtDir): u32 { return ((idx + 1) << 1) | <u32>dir; }
@inline export function refIdx(ref: u32): u32 { return (ref >> 1) - 1; }
@inline export function refDir(ref: u32): CtDir { return <CtDir>(ref & 1); }

// Records live in chunks of CHUNK records, each its own region (table/region.ts): the table grows
// by adding chunks, so a record never moves and a ref stays valid while the table grows. Records
// at and above `fresh` were never used; a new flow takes a freed record first, then the next fresh
// one, so memory becomes resident only as flows come. The index is rebuilt at twice the size when
// the records double (ctGrow, called by the host between batches, never from process()).
const CHUNK_SHIFT: u32 = 12;
const CHUNK: u32 = 1 << CHUNK_SHIFT;
const CHUNK_MASK: u32 = CHUNK - 1;
const MAX_FLOWS: u32 = 1 << 24;
const CHUNKS: usize = memory.data(<i32>((MAX_FLOWS >> CHUNK_SHIFT) * 4), 16);   // chunk i's address, u32
/** The table asks for room when this share of its records (of 8) is in use. The records are a free
 *  list, not the hash (the index has 4 buckets a record, at most half of them used), so a fuller
 *  pool costs no lookups; the headroom only has to outlast the batches between two grow() calls
 *  (the host calls it after each, and a batch makes at most maxBatch flows). */
const GROW_AT_EIGHTHS: u32 = 7;

let index: usize = 0;      // u64 buckets: low 32 bits hash, high 32 bits a ref (makeRef)
let indexMask: u32 = 0;
let capacity: u32 = 0;     // records in the chunks
let ceiling: u32 = 0;      // records the table may grow to
let fresh: u32 = 0;        // records [0, fresh) were used at least once
let used: u32 = 0;
let freeHead: u32 = 0;     // idx + 1 of the first free record below fresh (chained through CT_NEXT)
let hashKey: u64 = 0;      // per node, from the init seed (see hashTupleKeyed)
let growRefused = false;   // the last ctGrow found no memory
let seq: u64 = 0;          // touches so far: CT_SEQ orders flows across classes within a second
let changes: u32 = 0;      // records created, touched or deleted so far (wraps): the host's "anything new?"
const HEADS: usize = memory.data(<i32>(CT_CLASS_COUNT * 4), 16);   // per class: idx + 1 of the oldest flow
const TAILS: usize = memory.data(<i32>(CT_CLASS_COUNT * 4), 16);

@inline function indexBytes(cap: u32): usize { return <usize>cap * 4 * 8; }

/** Lays the table out for up to `maxFlows` flows (rounded up to a power of two), starting with one
 *  chunk; false when memory is out. */
export function ctInit(maxFlows: u32, seed: u32): bool {
  ceiling = pow2AtLeast(maxFlows < MAX_FLOWS ? maxFlows : MAX_FLOWS);
  const first = ceiling < CHUNK ? ceiling : CHUNK;
  hashKey = (<u64>seed * 0x9e3779b97f4a7c15) ^ 0x6a09e667f3bcc909;
  srcSetKey(hashKey);
  const chunk = regionAlloc(<usize>first * CT_REC_SIZE, false);
  index = regionAlloc(indexBytes(first), true);
  if (chunk == 0 || index == 0 || !srcLayout(first)) return false;
  store<u32>(CHUNKS, <u32>chunk);
  capacity = first;
  indexMask = first * 4 - 1;   // two keys per flow at load factor <= 0.5
  fresh = 0; freeHead = 0; used = 0; growRefused = false; seq = 0;
  memory.fill(HEADS, 0, CT_CLASS_COUNT * 4); memory.fill(TAILS, 0, CT_CLASS_COUNT * 4);
  return true;
}

@inline export function rec(idx: u32): usize {
  return <usize>load<u32>(CHUNKS + (<usize>(idx >> CHUNK_SHIFT) << 2)) + <usize>(idx & CHUNK_MASK) * CT_REC_SIZE;
}
export function ctCapacity(): u32 { return capacity; }
export function ctCeiling(): u32 { return ceiling; }
export function ctUsed(): u32 { return used; }
/** Records below this were ever used: walks over the table stop here. */
export function ctScanEnd(): u32 { return fresh; }
/** Records from idx on that lie next to each other in memory (to the end of idx's chunk), below fresh. */
export function ctRun(idx: u32): u32 {
  if (idx >= fresh) return 0;
  const end = (idx | CHUNK_MASK) + 1;
  return (end < fresh ? end : fresh) - idx;
}
/** Counts every change to a record (create, touch, delete; wraps at 2^32): equal counts, same records
 *  but for their generation checks and offload marks. */
export function ctChanges(): u32 { return changes; }
/** The last ctGrow found no memory (cleared by one that succeeds). */
export function ctGrowRefused(): bool { return growRefused; }

/** Does the table want more room (its load passed the threshold and it is below its ceiling)? */
export function ctWantsRoom(): bool {
  return capacity < ceiling && used >= (capacity >> 3) * GROW_AT_EIGHTHS;
}

/** Doubles the records (new chunks: nothing moves) and rebuilds the index at twice its size from
 *  the hashes it holds. All or nothing: false, with the table as it was, when memory is out. */
export function ctGrow(): bool {
  if (capacity >= ceiling) return false;
  const next = capacity << 1, added = next - capacity;
  const chunks = regionAlloc(<usize>added * CT_REC_SIZE, false);
  const nidx = chunks != 0 ? regionAlloc(indexBytes(next), true) : 0;
  if (nidx == 0 || !srcGrow(next)) {
    if (nidx != 0) regionFree(nidx, indexBytes(next));
    if (chunks != 0) regionFree(chunks, <usize>added * CT_REC_SIZE);
    growRefused = true;
    return false;
  }
  for (let c: u32 = 0; c < added >> CHUNK_SHIFT; c++) {
    store<u32>(CHUNKS + (<usize>((capacity >> CHUNK_SHIFT) + c) << 2), <u32>(chunks + (<usize>c << CHUNK_SHIFT) * CT_REC_SIZE));
  }
  rehash(index, indexMask, nidx, next * 4 - 1);
  regionFree(index, indexBytes(capacity));
  index = nidx; indexMask = next * 4 - 1;
  capacity = next;
  growRefused = false;
  return true;
}

// ── index ────────────────────────────────────────────────────────────────────────────────

@inline function tupleWord(sport: u32, dport: u32, proto: u32): u64 {
  return (<u64>sport << 32) | (<u64>dport << 16) | <u64>proto;
}

/** Does record idx, direction dir, hold the tuple (src, dst, sport, dport, proto)? */
@inline function matches(idx: u32, dir: CtDir, src: usize, dst: usize, sport: u32, dport: u32, proto: u32): bool {
  const r = rec(idx);
  if (<u32>load<u8>(r + CT_PROTO) != proto) return false;
  if (dir == CtDir.Original) {
    return <u32>load<u16>(r + CT_F_SPORT) == sport && <u32>load<u16>(r + CT_F_DPORT) == dport &&
      addrEq(r + CT_F_SRC, src) && addrEq(r + CT_F_DST, dst);
  }
  return <u32>load<u16>(r + CT_R_SPORT) == sport && <u32>load<u16>(r + CT_R_DPORT) == dport &&
    addrEq(r + CT_R_SRC, src) && addrEq(r + CT_R_DST, dst);
}

/** Finds the flow holding this tuple in either direction: its ref (makeRef), or 0.
 *  Ports are stored in host order. */
export function ctFind(src: usize, dst: usize, sport: u32, dport: u32, proto: u32): u32 {
  const h = hashTupleKeyed(src, dst, tupleWord(sport, dport, proto), hashKey);
  let b = h & indexMask;
  while (true) {
    const e = load<u64>(index + (<usize>b << 3));
    if (e == 0) return 0;
    if (<u32>e == h) {
      const ref = <u32>(e >> 32);
      if (matches(refIdx(ref), refDir(ref), src, dst, sport, dport, proto)) return ref;
    }
    b = (b + 1) & indexMask;
  }
}

/** Puts an index entry (ref << 32 | hash) in the first free bucket from its home. */
@inline function indexPut(e: u64): void { bucketPut(index, indexMask, e); }

@inline function indexInsert(h: u32, ref: u32): void { indexPut((<u64>ref << 32) | <u64>h); }

function indexRemove(h: u32, ref: u32): void {
  let b = h & indexMask;
  while (true) {
    const e = load<u64>(index + (<usize>b << 3));
    if (e == 0) return;   // not present (cannot happen for a live flow)
    if (<u32>(e >> 32) == ref) break;
    b = (b + 1) & indexMask;
  }
  // backward-shift deletion (Knuth 6.4 algorithm R)
  let hole = b;
  let j = (b + 1) & indexMask;
  while (true) {
    const e = load<u64>(index + (<usize>j << 3));
    if (e == 0) break;
    const home = (<u32>e) & indexMask;
    // move e into the hole when its home is not cyclically in (hole, j]
    const dist = (j - home) & indexMask, gap = (j - hole) & indexMask;
    if (dist >= gap) {
      store<u64>(index + (<usize>hole << 3), e);
      hole = j;
    }
    j = (j + 1) & indexMask;
  }
  store<u64>(index + (<usize>hole << 3), 0);
}

@inline function fwdHash(r: usize): u32 {
  return hashTupleKeyed(r + CT_F_SRC, r + CT_F_DST,
    tupleWord(<u32>load<u16>(r + CT_F_SPORT), <u32>load<u16>(r + CT_F_DPORT), <u32>load<u8>(r + CT_PROTO)), hashKey);
}
@inline function revHash(r: usize): u32 {
  return hashTupleKeyed(r + CT_R_SRC, r + CT_R_DST,
    tupleWord(<u32>load<u16>(r + CT_R_SPORT), <u32>load<u16>(r + CT_R_DPORT), <u32>load<u8>(r + CT_PROTO)), hashKey);
}

// ── LRU lists per timeout class ─────────────────────────────────────────────────────────

function listUnlink(idx: u32): void {
  const r = rec(idx), c = <usize>load<u8>(r + CT_CLS);
  const prev = load<u32>(r + CT_PREV), next = load<u32>(r + CT_NEXT);
  if (prev != 0) store<u32>(rec(prev - 1) + CT_NEXT, next); else store<u32>(HEADS + (c << 2), next);
  if (next != 0) store<u32>(rec(next - 1) + CT_PREV, prev); else store<u32>(TAILS + (c << 2), prev);
}

function listAppend(idx: u32, c: CtClass): void {
  const r = rec(idx), tail = load<u32>(TAILS + (<usize>c << 2));
  store<u8>(r + CT_CLS, <u8>c);
  store<u32>(r + CT_PREV, tail);
  store<u32>(r + CT_NEXT, 0);
  if (tail != 0) store<u32>(rec(tail - 1) + CT_NEXT, idx + 1); else store<u32>(HEADS + (<usize>c << 2), idx + 1);
  store<u32>(TAILS + (<usize>c << 2), idx + 1);
}

/** Marks the flow seen now, in class c (moves it to the tail of that class's list). */
export function ctTouch(idx: u32, c: CtClass, now: u32): void {
  const r = rec(idx);
  changes++;   // the caller may have moved the state or flags even when nothing below does
  // Seen already this second in the same class: the list stays ordered by second-granular
  // lastSeen without moving it, so a busy flow touches only its own record.
  if (load<u32>(r + CT_LAST) == now && <CtClass>load<u8>(r + CT_CLS) == c) return;
  store<u32>(r + CT_LAST, now);
  store<u64>(r + CT_SEQ, ++seq);
  srcToTail(idx);
  if (<CtClass>load<u8>(r + CT_CLS) == c && load<u32>(TAILS + (<usize>c << 2)) == idx + 1) return;
  listUnlink(idx);
  listAppend(idx, c);
}

@inline function expiresAt(idx: u32): u32 {
  const r = rec(idx);
  return load<u32>(r + CT_LAST) + load<u32>(TIMEOUTS + (<usize>load<u8>(r + CT_CLS) << 2));
}

// ── create / delete ────────────────────────────────────────────────────────────────────

/** Removes the flow from the index and its list and frees the record. */
export function ctDelete(idx: u32): void {
  const r = rec(idx);
  if ((load<u8>(r + CT_FLAGS) & FlowFlag.USED) == 0) return;
  indexRemove(fwdHash(r), makeRef(idx, CtDir.Original));
  indexRemove(revHash(r), makeRef(idx, CtDir.Reply));
  listUnlink(idx);
  srcRemove(idx);
  store<u8>(r + CT_FLAGS, 0);
  store<u32>(r + CT_NEXT, freeHead);
  freeHead = idx + 1;
  used--;
  changes++;
  count(C_CT_ENTRIES, <u64>-1);
}

/** A flow not established and unanswered for at least STALE_SEC whole seconds (so at least one
 *  second: a SYN's first retransmission, RFC 6298 2.1) goes before idle established flows; a newer
 *  one is a connection being set up and goes only in least-recently-seen order. */
const STALE_SEC: u32 = 2;
@inline function stale(idx: u32, now: u32): bool {
  const r = rec(idx);
  return !isEstablishedClass(<CtClass>load<u8>(r + CT_CLS)) && <i32>(now - load<u32>(r + CT_LAST)) >= <i32>STALE_SEC;
}
/** How far down the heaviest source's list eviction looks for a stale flow before it takes the head. */
const SHARE_LOOK: u32 = 8;

/** Frees one record: an expired one if any; else, when one source holds more than the mean share,
 *  that source's first stale flow (of its SHARE_LOOK least recently seen) or its least recently
 *  seen; else the least recently seen stale flow of the table, or its least recently seen flow. */
function evictOne(now: u32): bool {
  let oldest: u32 = 0, oldestSeq: u64 = U64.MAX_VALUE, old: u32 = 0, oldSeq: u64 = U64.MAX_VALUE;
  for (let c: u32 = 0; c < CT_CLASS_COUNT; c++) {
    const h = load<u32>(HEADS + (<usize>c << 2));
    if (h == 0) continue;
    if (<i32>(now - expiresAt(h - 1)) >= 0) { ctDelete(h - 1); count(C_CT_EXPIRED); return true; }
    const q = load<u64>(rec(h - 1) + CT_SEQ);
    if (q < oldestSeq) { oldest = h; oldestSeq = q; }
    if (q < oldSeq && stale(h - 1, now)) { old = h; oldSeq = q; }
  }
  if (oldest == 0) return false;
  const heavy = srcHeaviest();
  if (heavy != 0 && <u64>srcCount(heavy) * <u64>srcLive > <u64>used) {
    let v = load<u32>(srcEntry(heavy) + SRC_HEAD), f = v;
    for (let k: u32 = 0; k < SHARE_LOOK && f != 0; k++) {
      if (stale(f - 1, now)) { v = f; break; }
      f = load<u32>(rec(f - 1) + CT_SRC_NEXT);
    }
    ctDelete(v - 1);
    count(C_CT_EVICTED); count(C_CT_EVICTED_SHARE);
    return true;
  }
  ctDelete((old != 0 ? old : oldest) - 1);
  count(C_CT_EVICTED); count(C_CT_EVICTED_OLDEST);
  return true;
}

/** A new flow from the tuples staged at fwd (src16, dst16) and rev (src16, dst16); returns idx or -1.
 *  The caller has made sure no flow holds either tuple. */
export function ctCreate(fSrc: usize, fDst: usize, fSport: u32, fDport: u32,
                         rSrc: usize, rDst: usize, rSport: u32, rDport: u32,
                         proto: u32, state: CtState, c: CtClass, flags: u8, service: u32, gen: u32, now: u32): i32 {
  let idx: u32;
  if (freeHead == 0 && fresh < capacity) {
    idx = fresh++;
  } else {
    if (freeHead == 0 && !evictOne(now)) return -1;
    idx = freeHead - 1;
    freeHead = load<u32>(rec(idx) + CT_NEXT);
  }
  const r = rec(idx);
  addrCopy(r + CT_F_SRC, fSrc); addrCopy(r + CT_F_DST, fDst);
  addrCopy(r + CT_R_SRC, rSrc); addrCopy(r + CT_R_DST, rDst);
  store<u16>(r + CT_F_SPORT, <u16>fSport); store<u16>(r + CT_F_DPORT, <u16>fDport);
  store<u16>(r + CT_R_SPORT, <u16>rSport); store<u16>(r + CT_R_DPORT, <u16>rDport);
  store<u8>(r + CT_PROTO, <u8>proto);
  store<u8>(r + CT_STATE, <u8>state);
  store<u8>(r + CT_FLAGS, flags | FlowFlag.USED);
  store<u32>(r + CT_LAST, now);
  store<u32>(r + CT_CREATED, now);
  store<u32>(r + CT_SERVICE, service);
  store<u32>(r + CT_GEN, gen);
  store<u64>(r + CT_SEQ, ++seq);
  listAppend(idx, c);
  srcAdd(idx);
  indexInsert(fwdHash(r), makeRef(idx, CtDir.Original));
  indexInsert(revHash(r), makeRef(idx, CtDir.Reply));
  used++;
  changes++;
  count(C_CT_ENTRIES);
  return <i32>idx;
}

/** Expires up to `budget` flows whose timeout has passed; returns how many went. */
export function ctExpire(now: u32, budget: u32): u32 {
  let n: u32 = 0;
  for (let c: u32 = 0; c < CT_CLASS_COUNT && n < budget; c++) {
    while (n < budget) {
      const h = load<u32>(HEADS + (<usize>c << 2));
      if (h == 0 || <i32>(now - expiresAt(h - 1)) < 0) break;
      ctDelete(h - 1);
      count(C_CT_EXPIRED);
      n++;
    }
  }
  return n;
}

/** Is the flow past its timeout? (A flow is only reaped by ctExpire or eviction; lookups check this.) */
@inline export function ctExpired(idx: u32, now: u32): bool {
  return <i32>(now - expiresAt(idx)) >= 0;
}

/** Is record idx a live flow? */
@inline export function ctLive(idx: u32): bool { return (load<u8>(rec(idx) + CT_FLAGS) & FlowFlag.USED) != 0; }

export function ctClear(): void {
  for (let i: u32 = 0; i < fresh; i++) if ((load<u8>(rec(i) + CT_FLAGS) & FlowFlag.USED) != 0) ctDelete(i);
}

/** Invariants for tests: every used record is findable from both tuples, every index entry points at
 *  a used record whose tuple hashes to it, list membership equals the used count. Returns 0 when
 *  all hold, else a code naming the first violation. */
export function ctCheck(): u32 {
  let n: u32 = 0;
  for (let i: u32 = 0; i < fresh; i++) {
    const r = rec(i);
    if ((load<u8>(r + CT_FLAGS) & FlowFlag.USED) == 0) continue;
    n++;
    const f = ctFind(r + CT_F_SRC, r + CT_F_DST, <u32>load<u16>(r + CT_F_SPORT), <u32>load<u16>(r + CT_F_DPORT), <u32>load<u8>(r + CT_PROTO));
    if (f != makeRef(i, CtDir.Original)) return 1;
    const b = ctFind(r + CT_R_SRC, r + CT_R_DST, <u32>load<u16>(r + CT_R_SPORT), <u32>load<u16>(r + CT_R_DPORT), <u32>load<u8>(r + CT_PROTO));
    if (b != makeRef(i, CtDir.Reply)) return 2;
  }
  if (n != used) return 3;
  let entries: u32 = 0;
  for (let b: u32 = 0; b <= indexMask; b++) {
    const e = load<u64>(index + (<usize>b << 3));
    if (e == 0) continue;
    entries++;
    const idx = refIdx(<u32>(e >> 32));
    if (idx >= fresh || (load<u8>(rec(idx) + CT_FLAGS) & FlowFlag.USED) == 0) return 4;
  }
  if (entries != used * 2) return 5;
  let listed: u32 = 0;
  for (let c: u32 = 0; c < CT_CLASS_COUNT; c++) {
    let h = load<u32>(HEADS + (<usize>c << 2)), guard: u32 = 0;
    while (h != 0 && guard <= fresh) { listed++; guard++; h = load<u32>(rec(h - 1) + CT_NEXT); }
  }
  if (listed != used) return 6;
  return srcCheck(used);
}
