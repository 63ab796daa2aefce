// Connection tracking: one record per flow, found from either direction through an open-addressing
// index (linear probing, backward-shift deletion: no tombstones, so lookups stay short forever).
// Records sit on LRU lists, one per timeout class, so every list is ordered by expiry time as
// well: the head of each list is the next to expire, and expiry and eviction are O(1).
import { addrCopy, addrEq } from "../mem";
import { hashTupleKeyed, pow2AtLeast } from "./hash";
import { count } from "../state";
import {
  C_CT_EVICTED, C_CT_EXPIRED, C_CT_ENTRIES, CT_REC_SIZE, CT_F_SRC, CT_F_DST, CT_R_SRC, CT_R_DST, CT_F_SPORT, CT_F_DPORT,
  CT_R_SPORT, CT_R_DPORT, CT_PROTO, CT_STATE, CT_CLS, CT_FLAGS, CT_LAST, CT_SERVICE, CT_PREV, CT_NEXT, CT_GEN, CT_CREATED,
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

let index: usize = 0;      // u64 buckets: low 32 bits hash, high 32 bits a ref (makeRef)
let indexMask: u32 = 0;
let flows: usize = 0;
let capacity: u32 = 0;
let used: u32 = 0;
let freeHead: u32 = 0;     // idx + 1 of the first free record (chained through CT_NEXT)
let hashKey: u64 = 0;      // per node, from the init seed (see hashTupleKeyed)
const HEADS: usize = memory.data(<i32>(CT_CLASS_COUNT * 4), 16);   // per class: idx + 1 of the oldest flow
const TAILS: usize = memory.data(<i32>(CT_CLASS_COUNT * 4), 16);

export function ctBytesNeeded(cap: u32): usize {
  const c = pow2AtLeast(cap);
  return <usize>c * CT_REC_SIZE + <usize>c * 4 * 8 + 64;
}

/** Lays the table out at `base`; returns the end. */
export function ctInit(base: usize, cap: u32, seed: u32): usize {
  capacity = pow2AtLeast(cap);
  hashKey = (<u64>seed * 0x9e3779b97f4a7c15) ^ 0x6a09e667f3bcc909;
  flows = (base + 63) & ~63;
  index = flows + <usize>capacity * CT_REC_SIZE;
  indexMask = capacity * 4 - 1;   // two keys per flow at load factor <= 0.5
  memory.fill(flows, 0, <usize>capacity * CT_REC_SIZE + <usize>(indexMask + 1) * 8);
  // free list through CT_NEXT, in index order
  for (let i: u32 = 0; i < capacity; i++) store<u32>(rec(i) + CT_NEXT, i + 1 < capacity ? i + 2 : 0);
  freeHead = 1;
  used = 0;
  memory.fill(HEADS, 0, CT_CLASS_COUNT * 4); memory.fill(TAILS, 0, CT_CLASS_COUNT * 4);
  return index + <usize>(indexMask + 1) * 8;
}

@inline export function rec(idx: u32): usize { return flows + <usize>idx * CT_REC_SIZE; }
export function ctCapacity(): u32 { return capacity; }
export function ctUsed(): u32 { return used; }

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

function indexInsert(h: u32, ref: u32): void {
  let b = h & indexMask;
  while (load<u64>(index + (<usize>b << 3)) != 0) b = (b + 1) & indexMask;
  store<u64>(index + (<usize>b << 3), (<u64>ref << 32) | <u64>h);
}

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
  // Seen already this second in the same class: the list stays ordered by second-granular
  // lastSeen without moving it, so a busy flow touches only its own record.
  if (load<u32>(r + CT_LAST) == now && <CtClass>load<u8>(r + CT_CLS) == c) return;
  store<u32>(r + CT_LAST, now);
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
  store<u8>(r + CT_FLAGS, 0);
  store<u32>(r + CT_NEXT, freeHead);
  freeHead = idx + 1;
  used--;
  count(C_CT_ENTRIES, <u64>-1);
}

/** Frees one record: an expired one if any, else the oldest non-established, else the oldest. */
function evictOne(now: u32): bool {
  let best: u32 = 0, bestLast: u32 = 0xffffffff, bestEst = true;
  for (let c: u32 = 0; c < CT_CLASS_COUNT; c++) {
    const h = load<u32>(HEADS + (<usize>c << 2));
    if (h == 0) continue;
    if (<i32>(now - expiresAt(h - 1)) >= 0) { ctDelete(h - 1); count(C_CT_EXPIRED); return true; }
    const est = isEstablishedClass(c), last = load<u32>(rec(h - 1) + CT_LAST);
    if ((bestEst && !est) || (bestEst == est && last < bestLast)) { best = h; bestLast = last; bestEst = est; }
  }
  if (best == 0) return false;
  ctDelete(best - 1);
  count(C_CT_EVICTED);
  return true;
}

/** A new flow from the tuples staged at fwd (src16, dst16) and rev (src16, dst16); returns idx or -1.
 *  The caller has made sure no flow holds either tuple. */
export function ctCreate(fSrc: usize, fDst: usize, fSport: u32, fDport: u32,
                         rSrc: usize, rDst: usize, rSport: u32, rDport: u32,
                         proto: u32, state: CtState, c: CtClass, flags: u8, service: u32, gen: u32, now: u32): i32 {
  if (freeHead == 0 && !evictOne(now)) return -1;
  const idx = freeHead - 1, r = rec(idx);
  freeHead = load<u32>(r + CT_NEXT);
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
  listAppend(idx, c);
  indexInsert(fwdHash(r), makeRef(idx, CtDir.Original));
  indexInsert(revHash(r), makeRef(idx, CtDir.Reply));
  used++;
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
  for (let i: u32 = 0; i < capacity; i++) if ((load<u8>(rec(i) + CT_FLAGS) & FlowFlag.USED) != 0) ctDelete(i);
}

/** Invariants for tests: every used record is findable from both tuples, every index entry points at
 *  a used record whose tuple hashes to it, list membership equals the used count. Returns 0 when
 *  all hold, else a code naming the first violation. */
export function ctCheck(): u32 {
  let n: u32 = 0;
  for (let i: u32 = 0; i < capacity; i++) {
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
    if (idx >= capacity || (load<u8>(rec(idx) + CT_FLAGS) & FlowFlag.USED) == 0) return 4;
  }
  if (entries != used * 2) return 5;
  let listed: u32 = 0;
  for (let c: u32 = 0; c < CT_CLASS_COUNT; c++) {
    let h = load<u32>(HEADS + (<usize>c << 2)), guard: u32 = 0;
    while (h != 0 && guard <= capacity) { listed++; guard++; h = load<u32>(rec(h - 1) + CT_NEXT); }
  }
  if (listed != used) return 6;
  return 0;
}
