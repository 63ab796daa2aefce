// Connection tracking: one record per flow, found from either direction through an open-addressing
// index (linear probing, backward-shift deletion: no tombstones, so lookups stay short forever).
// Records sit on LRU lists, one per timeout class, so every list is ordered by expiry time as
// well: the head of each list is the next to expire, and expiry and eviction are O(1).
import { addrCopy, addrEq } from "../mem";
import { hashTupleKeyed, pow2AtLeast } from "./hash";
import { count } from "../state";
import { C_CT_EVICTED, C_CT_EXPIRED, C_CT_ENTRIES } from "../abi";

// ╒═══ flow record, 128 bytes ═══╕
//   0 fwdSrc 16   16 fwdDst 16   32 revSrc 16   48 fwdSport u16  50 fwdDport u16  52 revSport u16
//  54 revDport u16   56 proto u8   57 state u8   58 cls u8   59 flags u8   60 lastSeen u32
//  64 revDst 16   80 service u32 (entry id + 1)   84 prev u32   88 next u32 (list links, idx + 1)
//  92 gen u32 (generation the flow was last checked against)   96 created u32   100 backendPort u32
// The forward tuple is what the client sent; the reply tuple is what the backend sends back. NAT is
// the difference between them, as in the kernel's tuplehash[ORIGINAL]/[REPLY].
export const REC = 128;
export const F_SRC = 0, F_DST = 16, R_SRC = 32, F_SPORT = 48, F_DPORT = 50, R_SPORT = 52, R_DPORT = 54,
  PROTO = 56, STATE = 57, CLS = 58, FLAGS = 59, LAST = 60, R_DST = 64, SERVICE = 80, PREV = 84, NEXT = 88,
  GEN = 92, CREATED = 96;

export namespace FlowFlag {
  export const DNAT: u8 = 1;
  export const SNAT: u8 = 2;
  export const REPLIED: u8 = 4;
  export const ANY_ADDR_SERVICE: u8 = 8;  // matched a NodePort entry on "any local address"
  export const USED: u8 = 0x80;
}

// TCP states, close to the kernel's nf_conntrack_proto_tcp.
export namespace Tcp {
  export const SYN_SENT: u8 = 1;
  export const SYN_RECV: u8 = 2;
  export const ESTABLISHED: u8 = 3;
  export const FIN_WAIT: u8 = 4;
  export const TIME_WAIT: u8 = 5;
  export const CLOSE: u8 = 6;
}
export const UDP_UNREPLIED: u8 = 10, UDP_REPLIED: u8 = 11, ICMP_STATE: u8 = 20, OTHER_STATE: u8 = 30;

// Timeout classes; the kernel's defaults (net.netfilter.nf_conntrack_*_timeout*).
export const CLS_TCP_SYN: u32 = 0, CLS_TCP_EST: u32 = 1, CLS_TCP_CLOSING: u32 = 2, CLS_TCP_TIME_WAIT: u32 = 3,
  CLS_TCP_CLOSE: u32 = 4, CLS_UDP: u32 = 5, CLS_UDP_STREAM: u32 = 6, CLS_ICMP: u32 = 7, CLS_COUNT: u32 = 8;
const TIMEOUTS: usize = memory.data<u32>([120, 432000, 120, 120, 10, 30, 120, 30]);
/** Classes whose flows are "established": evicted only when nothing else can go. */
@inline function isEstablishedClass(c: u32): bool { return c == CLS_TCP_EST || c == CLS_UDP_STREAM; }

let index: usize = 0;      // u64 buckets: low 32 bits hash, high 32 bits ref = (idx + 1) << 1 | dir
let indexMask: u32 = 0;
let flows: usize = 0;
let capacity: u32 = 0;
let used: u32 = 0;
let freeHead: u32 = 0;
let hashKey: u64 = 0;      // per node, from the init seed (see hashTupleKeyed)     // idx + 1 of the first free record (chained through NEXT)
const HEADS: usize = memory.data(4 * 8, 16);   // per class: idx + 1 of the oldest flow
const TAILS: usize = memory.data(4 * 8, 16);

export function ctBytesNeeded(cap: u32): usize {
  const c = pow2AtLeast(cap);
  return <usize>c * REC + <usize>c * 4 * 8 + 64;
}

/** Lays the table out at `base`; returns the end. */
export function ctInit(base: usize, cap: u32, seed: u32): usize {
  capacity = pow2AtLeast(cap);
  hashKey = (<u64>seed * 0x9e3779b97f4a7c15) ^ 0x6a09e667f3bcc909;
  flows = (base + 63) & ~63;
  index = flows + <usize>capacity * REC;
  indexMask = capacity * 4 - 1;   // two keys per flow at load factor <= 0.5
  memory.fill(flows, 0, <usize>capacity * REC + <usize>(indexMask + 1) * 8);
  // free list through NEXT, in index order
  for (let i: u32 = 0; i < capacity; i++) store<u32>(rec(i) + NEXT, i + 1 < capacity ? i + 2 : 0);
  freeHead = 1;
  used = 0;
  memory.fill(HEADS, 0, 32); memory.fill(TAILS, 0, 32);
  return index + <usize>(indexMask + 1) * 8;
}

@inline export function rec(idx: u32): usize { return flows + <usize>idx * REC; }
export function ctCapacity(): u32 { return capacity; }
export function ctUsed(): u32 { return used; }

// ── index ────────────────────────────────────────────────────────────────────────────────

@inline function tupleWord(sport: u32, dport: u32, proto: u32): u64 {
  return (<u64>sport << 32) | (<u64>dport << 16) | <u64>proto;
}

/** Does record idx, direction dir, hold the tuple (src, dst, sport, dport, proto)? */
@inline function matches(idx: u32, dir: u32, src: usize, dst: usize, sport: u32, dport: u32, proto: u32): bool {
  const r = rec(idx);
  if (<u32>load<u8>(r + PROTO) != proto) return false;
  if (dir == 0) {
    return <u32>load<u16>(r + F_SPORT) == sport && <u32>load<u16>(r + F_DPORT) == dport &&
      addrEq(r + F_SRC, src) && addrEq(r + F_DST, dst);
  }
  return <u32>load<u16>(r + R_SPORT) == sport && <u32>load<u16>(r + R_DPORT) == dport &&
    addrEq(r + R_SRC, src) && addrEq(r + R_DST, dst);
}

/** Finds the flow holding this tuple in either direction: (idx + 1) << 1 | dir, or 0.
 *  Ports are stored in host order. */
export function ctFind(src: usize, dst: usize, sport: u32, dport: u32, proto: u32): u32 {
  const h = hashTupleKeyed(src, dst, tupleWord(sport, dport, proto), hashKey);
  let b = h & indexMask;
  while (true) {
    const e = load<u64>(index + (<usize>b << 3));
    if (e == 0) return 0;
    if (<u32>e == h) {
      const ref = <u32>(e >> 32), idx = (ref >> 1) - 1;
      if (matches(idx, ref & 1, src, dst, sport, dport, proto)) return ref;
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
  return hashTupleKeyed(r + F_SRC, r + F_DST,
    tupleWord(<u32>load<u16>(r + F_SPORT), <u32>load<u16>(r + F_DPORT), <u32>load<u8>(r + PROTO)), hashKey);
}
@inline function revHash(r: usize): u32 {
  return hashTupleKeyed(r + R_SRC, r + R_DST,
    tupleWord(<u32>load<u16>(r + R_SPORT), <u32>load<u16>(r + R_DPORT), <u32>load<u8>(r + PROTO)), hashKey);
}

// ── LRU lists per timeout class ─────────────────────────────────────────────────────────

function listUnlink(idx: u32): void {
  const r = rec(idx), c = <usize>load<u8>(r + CLS);
  const prev = load<u32>(r + PREV), next = load<u32>(r + NEXT);
  if (prev != 0) store<u32>(rec(prev - 1) + NEXT, next); else store<u32>(HEADS + (c << 2), next);
  if (next != 0) store<u32>(rec(next - 1) + PREV, prev); else store<u32>(TAILS + (c << 2), prev);
}

function listAppend(idx: u32, c: u32): void {
  const r = rec(idx), tail = load<u32>(TAILS + (<usize>c << 2));
  store<u8>(r + CLS, <u8>c);
  store<u32>(r + PREV, tail);
  store<u32>(r + NEXT, 0);
  if (tail != 0) store<u32>(rec(tail - 1) + NEXT, idx + 1); else store<u32>(HEADS + (<usize>c << 2), idx + 1);
  store<u32>(TAILS + (<usize>c << 2), idx + 1);
}

/** Marks the flow seen now, in class c (moves it to the tail of that class's list). */
export function ctTouch(idx: u32, c: u32, now: u32): void {
  const r = rec(idx);
  // Seen already this second in the same class: the list stays ordered by second-granular
  // lastSeen without moving it, so a busy flow touches only its own record.
  if (load<u32>(r + LAST) == now && <u32>load<u8>(r + CLS) == c) return;
  store<u32>(r + LAST, now);
  if (<u32>load<u8>(r + CLS) == c && load<u32>(TAILS + (<usize>c << 2)) == idx + 1) return;
  listUnlink(idx);
  listAppend(idx, c);
}

@inline function expiresAt(idx: u32): u32 {
  const r = rec(idx);
  return load<u32>(r + LAST) + load<u32>(TIMEOUTS + (<usize>load<u8>(r + CLS) << 2));
}

// ── create / delete ────────────────────────────────────────────────────────────────────

/** Removes the flow from the index and its list and frees the record. */
export function ctDelete(idx: u32): void {
  const r = rec(idx);
  if ((load<u8>(r + FLAGS) & FlowFlag.USED) == 0) return;
  indexRemove(fwdHash(r), ((idx + 1) << 1) | 0);
  indexRemove(revHash(r), ((idx + 1) << 1) | 1);
  listUnlink(idx);
  store<u8>(r + FLAGS, 0);
  store<u32>(r + NEXT, freeHead);
  freeHead = idx + 1;
  used--;
  count(C_CT_ENTRIES, <u64>-1);
}

/** Frees one record: an expired one if any, else the oldest non-established, else the oldest. */
function evictOne(now: u32): bool {
  let best: u32 = 0, bestLast: u32 = 0xffffffff, bestEst = true;
  for (let c: u32 = 0; c < CLS_COUNT; c++) {
    const h = load<u32>(HEADS + (<usize>c << 2));
    if (h == 0) continue;
    if (<i32>(now - expiresAt(h - 1)) >= 0) { ctDelete(h - 1); count(C_CT_EXPIRED); return true; }
    const est = isEstablishedClass(c), last = load<u32>(rec(h - 1) + LAST);
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
                         proto: u32, state: u8, c: u32, flags: u8, service: u32, gen: u32, now: u32): i32 {
  if (freeHead == 0 && !evictOne(now)) return -1;
  const idx = freeHead - 1, r = rec(idx);
  freeHead = load<u32>(r + NEXT);
  addrCopy(r + F_SRC, fSrc); addrCopy(r + F_DST, fDst);
  addrCopy(r + R_SRC, rSrc); addrCopy(r + R_DST, rDst);
  store<u16>(r + F_SPORT, <u16>fSport); store<u16>(r + F_DPORT, <u16>fDport);
  store<u16>(r + R_SPORT, <u16>rSport); store<u16>(r + R_DPORT, <u16>rDport);
  store<u8>(r + PROTO, <u8>proto);
  store<u8>(r + STATE, state);
  store<u8>(r + FLAGS, flags | FlowFlag.USED);
  store<u32>(r + LAST, now);
  store<u32>(r + CREATED, now);
  store<u32>(r + SERVICE, service);
  store<u32>(r + GEN, gen);
  listAppend(idx, c);
  indexInsert(fwdHash(r), ((idx + 1) << 1) | 0);
  indexInsert(revHash(r), ((idx + 1) << 1) | 1);
  used++;
  count(C_CT_ENTRIES);
  return <i32>idx;
}

/** Expires up to `budget` flows whose timeout has passed; returns how many went. */
export function ctExpire(now: u32, budget: u32): u32 {
  let n: u32 = 0;
  for (let c: u32 = 0; c < CLS_COUNT && n < budget; c++) {
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
@inline export function ctLive(idx: u32): bool { return (load<u8>(rec(idx) + FLAGS) & FlowFlag.USED) != 0; }

export function ctClear(): void {
  for (let i: u32 = 0; i < capacity; i++) if ((load<u8>(rec(i) + FLAGS) & FlowFlag.USED) != 0) ctDelete(i);
}

/** Invariants for tests: every used record is findable from both tuples, every index entry points at
 *  a used record whose tuple hashes to it, list membership equals the used count. Returns 0 when
 *  all hold, else a code naming the first violation. */
export function ctCheck(): u32 {
  let n: u32 = 0;
  for (let i: u32 = 0; i < capacity; i++) {
    const r = rec(i);
    if ((load<u8>(r + FLAGS) & FlowFlag.USED) == 0) continue;
    n++;
    const f = ctFind(r + F_SRC, r + F_DST, <u32>load<u16>(r + F_SPORT), <u32>load<u16>(r + F_DPORT), <u32>load<u8>(r + PROTO));
    if (f != (((i + 1) << 1) | 0)) return 1;
    const b = ctFind(r + R_SRC, r + R_DST, <u32>load<u16>(r + R_SPORT), <u32>load<u16>(r + R_DPORT), <u32>load<u8>(r + PROTO));
    if (b != (((i + 1) << 1) | 1)) return 2;
  }
  if (n != used) return 3;
  let entries: u32 = 0;
  for (let b: u32 = 0; b <= indexMask; b++) {
    const e = load<u64>(index + (<usize>b << 3));
    if (e == 0) continue;
    entries++;
    const ref = <u32>(e >> 32), idx = (ref >> 1) - 1;
    if (idx >= capacity || (load<u8>(rec(idx) + FLAGS) & FlowFlag.USED) == 0) return 4;
  }
  if (entries != used * 2) return 5;
  let listed: u32 = 0;
  for (let c: u32 = 0; c < CLS_COUNT; c++) {
    let h = load<u32>(HEADS + (<usize>c << 2)), guard: u32 = 0;
    while (h != 0 && guard <= capacity) { listed++; guard++; h = load<u32>(rec(h - 1) + NEXT); }
  }
  if (listed != used) return 6;
  return 0;
}
