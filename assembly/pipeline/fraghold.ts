// Early fragments. A later fragment (no ports) addressed to a service whose first fragment has not
// come yet cannot be NATed: the network reordered the datagram, or the sender sent its last
// fragment first. The kernel, which reassembles before it NATs (net/ipv4/ip_fragment.c,
// net/ipv6/reassembly.c), delivers such a datagram; so does wasp: the fragment's slot bytes are
// copied into a preallocated pool and held until the datagram's first fragment creates or finds
// its flow (frag.remember marks them), then run through the pipeline again, in the same batch, as
// extra slots the host writes after the batch (releasedAddr(), releasedCount()).
//
// Bounded: HOLD_CAP fragments of up to HOLD_ROOM bytes, laid out once by init(). A held fragment
// whose first fragment does not come within HOLD_SEC, or one that finds the pool full of live
// entries, is dropped and counted as FragmentUntracked; nothing here allocates or traps.
//
// ╒═══ entry, 64 bytes (internal, the host never reads it) ═══╕
//  0 src16 | 16 dst16 (the addresses as they arrived) | 32 u32 id | 36 u8 proto | 37 u8 state |
// 38 u16 slot flags | 40 u32 peer | 44 u32 expiresSec | 48 u32 len | 52 u32 lead (vnet header bytes)
// ╒═══ buffer per entry: HEADROOM free bytes, then the slot's bytes from its vnet header on ═══╕
import { SLOT_SIZE, SLOT_DATA, SLOT_LEN, SLOT_FLAGS, SLOT_PEER, SLOT_BUF_START, SLOT_BUF_END, SLOT_VERDICT,
  SLOT_REASON, SLOT_SERVICE, SLOT_NOTE, SlotFlag, HEADROOM, C_DROP_BASE, C_FRAG_HELD, C_FRAG_HOLDING, Drop, Verdict } from "../abi";
import { addrCopy, addrEq } from "../mem";
import * as st from "../state";
import * as pkt from "./packet";

/** Fragments held at once over all datagrams: a 64 KiB datagram at MTU 1500 has 45. */
export const HOLD_CAP: u32 = 256;
/** Bytes of one held slot (vnet header, VXLAN and Ethernet headers included): a 9,000-byte jumbo
 *  frame from the underlay fits. */
export const HOLD_ROOM: u32 = 9216 + 64;
/** Seconds a fragment waits for its first fragment: the first comes right behind a reordered
 *  fragment, or not at all (the kernel waits 30 s, ipfrag_time, but holds a whole datagram's
 *  reassembly queue; here a lost datagram must free the pool for the next ones soon). */
const HOLD_SEC: u32 = 3;

const E_SRC = 0, E_DST = 16, E_ID = 32, E_PROTO = 36, E_STATE = 37, E_FLAGS = 38, E_PEER = 40, E_EXPIRES = 44, E_LEN = 48, E_LEAD = 52, ENTRY: usize = 64;
const enum Held { Free = 0, Waiting = 1, Releasing = 2, Released = 3 }

let entries: usize = 0;
let bufs: usize = 0;
let stride: usize = 0;
let outSlots: usize = 0;      // released slots of the current batch
let outCount: u32 = 0;
let waiting: u32 = 0;         // entries Waiting or Releasing
let releasedThisBatch: u32 = 0;

/** Bytes init() reserves for the pool, from a 64-aligned address. */
export function holdBytesNeeded(): usize {
  return <usize>HOLD_CAP * ENTRY + 64 + <usize>HOLD_CAP * SLOT_SIZE + 64 + <usize>HOLD_CAP * holdStride();
}
@inline function holdStride(): usize { return (<usize>HEADROOM + <usize>HOLD_ROOM + 63) & ~63; }

/** Lays the pool out at `at` (holdBytesNeeded() bytes); returns its end. The buffers lie outside
 *  the host's packet buffer area: only the core makes slots that point into them. */
export function holdInit(at: usize): usize {
  entries = at;
  outSlots = (entries + <usize>HOLD_CAP * ENTRY + 63) & ~63;
  bufs = (outSlots + <usize>HOLD_CAP * SLOT_SIZE + 63) & ~63;
  stride = holdStride();
  memory.fill(entries, 0, <usize>HOLD_CAP * ENTRY);
  waiting = 0; releasedThisBatch = 0; outCount = 0;
  return bufs + <usize>HOLD_CAP * stride;
}

/** A new batch: the buffers released by the last one have been written by the host. */
export function holdBatchStart(): void {
  outCount = 0;
  if (releasedThisBatch == 0) return;
  for (let i: u32 = 0; i < HOLD_CAP; i++) {
    const e = entries + <usize>i * ENTRY;
    if (load<u8>(e + E_STATE) == <u8>Held.Released) store<u8>(e + E_STATE, <u8>Held.Free);
  }
  releasedThisBatch = 0;
}

@inline function expired(e: usize, now: u32): bool { return <i32>(load<u32>(e + E_EXPIRES) - now) <= 0; }

function forget(e: usize): void {
  store<u8>(e + E_STATE, <u8>Held.Free);
  waiting--;
  // counted now as its slot would have been: a drop, and why
  st.count(<u32>Verdict.Drop);
  st.count(C_DROP_BASE + <u32>Drop.FragmentUntracked);
  holding();
}

/** The gauge of fragments waiting. */
@inline function holding(): void { store<u64>(st.counters + (<usize>C_FRAG_HOLDING << 3), <u64>waiting); }

/** Drops (and counts) every fragment that waited too long; the sweep calls it once a second. */
export function holdExpire(now: u32): void {
  if (waiting == 0) return;
  for (let i: u32 = 0; i < HOLD_CAP; i++) {
    const e = entries + <usize>i * ENTRY;
    if (load<u8>(e + E_STATE) == <u8>Held.Waiting && expired(e, now)) forget(e);
  }
}

/**
 * Holds the packet of slot s (the fragment pkt has classified; its bytes from the vnet header on
 * are [data - lead, data + len)). False when it cannot: too big, or the pool full of fragments
 * still waiting (the caller drops it).
 */
export function hold(s: usize, data: usize, len: u32, lead: usize): bool {
  if (<usize>len + lead > <usize>HOLD_ROOM) return false;
  const now = st.nowSec;
  let free: usize = 0;
  for (let i: u32 = 0; i < HOLD_CAP; i++) {
    const e = entries + <usize>i * ENTRY, state = load<u8>(e + E_STATE);
    if (state == <u8>Held.Waiting && expired(e, now)) forget(e);
    if (load<u8>(e + E_STATE) == <u8>Held.Free) { free = e; break; }
  }
  if (free == 0) return false;
  const e = free, buf = bufOf(e);
  addrCopy(e + E_SRC, pkt.SRC); addrCopy(e + E_DST, pkt.DST);
  store<u32>(e + E_ID, pkt.fragId);
  store<u8>(e + E_PROTO, <u8>pkt.proto);
  store<u8>(e + E_STATE, <u8>Held.Waiting);
  // a held slot is never traced again: its trace record belongs to the batch it came in
  store<u16>(e + E_FLAGS, load<u16>(s + SLOT_FLAGS) & ~SlotFlag.TRACE);
  store<u32>(e + E_PEER, load<u32>(s + SLOT_PEER));
  store<u32>(e + E_EXPIRES, now + HOLD_SEC);
  store<u32>(e + E_LEN, len);
  store<u32>(e + E_LEAD, <u32>lead);
  memory.copy(buf + <usize>HEADROOM, data - lead, <usize>len + lead);
  waiting++;
  st.count(C_FRAG_HELD);
  holding();
  return true;
}

@inline function bufOf(e: usize): usize { return bufs + (e - entries) / ENTRY * stride; }

/** The first fragment of pkt's datagram has its flow: its held fragments are released after it. */
export function markRelease(): void {
  if (waiting == 0) return;
  for (let i: u32 = 0; i < HOLD_CAP; i++) {
    const e = entries + <usize>i * ENTRY;
    if (load<u8>(e + E_STATE) == <u8>Held.Waiting && load<u32>(e + E_ID) == pkt.fragId &&
        <u32>load<u8>(e + E_PROTO) == pkt.proto && addrEq(e + E_SRC, pkt.SRC) && addrEq(e + E_DST, pkt.DST)) {
      store<u8>(e + E_STATE, <u8>Held.Releasing);
    }
  }
}

/** The next fragment to release as a slot of this batch, or 0: a fresh slot record, flags and peer
 *  as it came; its buffer stays untouched until the next batch. */
export function nextRelease(): usize {
  if (waiting == 0) return 0;
  for (let i: u32 = 0; i < HOLD_CAP; i++) {
    const e = entries + <usize>i * ENTRY;
    if (load<u8>(e + E_STATE) != <u8>Held.Releasing) continue;
    store<u8>(e + E_STATE, <u8>Held.Released);
    waiting--; releasedThisBatch++;
    holding();
    const buf = bufOf(e), s = outSlots + <usize>outCount * SLOT_SIZE;
    outCount++;
    store<u32>(s + SLOT_DATA, <u32>(buf + <usize>HEADROOM + <usize>load<u32>(e + E_LEAD)));
    store<u32>(s + SLOT_LEN, load<u32>(e + E_LEN));
    store<u16>(s + SLOT_FLAGS, load<u16>(e + E_FLAGS));
    store<u8>(s + SLOT_VERDICT, 0); store<u8>(s + SLOT_REASON, 0);
    store<u32>(s + SLOT_PEER, load<u32>(e + E_PEER));
    store<u32>(s + SLOT_BUF_START, <u32>buf);
    store<u32>(s + SLOT_BUF_END, <u32>(buf + stride));
    store<u32>(s + SLOT_SERVICE, 0); store<u32>(s + SLOT_NOTE, 0);
    return s;
  }
  return 0;
}

export function releasedAddr(): usize { return outSlots; }
export function releasedCount(): u32 { return outCount; }

/** Forgets every held fragment (a conntrack flush), counting none as lost. */
export function holdClear(): void {
  if (entries != 0) memory.fill(entries, 0, <usize>HOLD_CAP * ENTRY);
  if (st.counters != 0) store<u64>(st.counters + (<usize>C_FRAG_HOLDING << 3), 0);
  waiting = 0; releasedThisBatch = 0; outCount = 0;
}
