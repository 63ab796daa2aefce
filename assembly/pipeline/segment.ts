// A GSO super-packet (virtio_net_hdr gso_type TCPV4/TCPV6, up to 64 KiB) bound for another node
// is cut into segments of gso_size payload bytes, as the kernel's tcp_gso_segment does, where it
// cannot leave whole through the tunnel TAP (encapTunnelGso in overlay.ts: no UDP-tunnel GSO in the
// kernel, strict rp_filter, ECN): the underlay socket offloads nothing and nothing on the wire may
// exceed the underlay MTU. The first
// segment stays in the slot; the others are written to the segment area and handed to the host as
// extra slots (extraSlotsAddr(), extraCount()), each already VXLAN-encapsulated.
//
// Wire order: the host sends one list, overlayOut, holding every Overlay packet of the batch in the
// order the inner packets came: a slot's descriptor, then the extra segments it was cut into, then
// the next slot's. Sending the slots first and all extras after would put segment 0 of a flow's
// second super-packet ahead of segments 1..n of its first: the receiving TCP sees reordering, answers
// with duplicate ACKs, and the sender retransmits and shrinks its window (bench overlay, before:
// 1,418 retransmissions in 3 s of iperf3, 0.27 Gbit/s).
import { SLOT_SIZE, SLOT_DATA, SLOT_LEN, SLOT_FLAGS, SLOT_VERDICT, SLOT_REASON, SLOT_PEER, SLOT_BUF_START,
  SLOT_BUF_END, SLOT_SERVICE, SLOT_NOTE, Verdict, Note } from "../abi";
import { ld16, ld32, st16, st32, st8, ld8 } from "../mem";
import { csum } from "../wire/checksum";
import { ipv4PseudoSum } from "../wire/ipv4";
import { ipv6PseudoSum } from "../wire/ipv6";
import { PROTO_TCP, TCP_CHECK, TCP_FLAGS, TCP_SEQ, TCP_FIN, TCP_PSH, Tcp } from "../wire/l4";
import * as pkt from "./packet";
import { VNET_GSO_SIZE } from "./packet";
import { encap } from "./overlay";

const TCP_CWR: u32 = 0x80;

let slots: usize = 0;       // extra slots
let cap: u32 = 0;
let area: usize = 0;        // segment buffers
let stride: u32 = 0;
let used: u32 = 0;
let order: usize = 0;       // overlayOut: slot descriptors in wire order
let orderCap: u32 = 0;
let ordered: u32 = 0;

export function segmentInit(at: usize, n: u32, segStride: u32): usize {
  slots = (at + 63) & ~63; cap = n;
  area = (slots + <usize>n * SLOT_SIZE + 63) & ~63; stride = segStride;
  return area + <usize>n * stride;
}
export function segmentReset(): void { used = 0; ordered = 0; }
/** Lays out overlayOut: n descriptors at `at` (64-aligned by the caller); returns its end. */
export function overlayOutInit(at: usize, n: u32): usize { order = at; orderCap = n; return at + <usize>n * SLOT_SIZE; }
export function overlayOutAddr(): usize { return order; }
export function overlayOutCount(): u32 { return ordered; }
/** Appends the finished slot s (verdict Overlay) and the extra segments [firstExtra, extraCount())
 *  it was cut into to overlayOut. The list holds a descriptor for every slot and every extra slot,
 *  so it never runs out. */
export function appendOverlayOut(s: usize, firstExtra: u32): void {
  if (ordered >= orderCap) return;
  memory.copy(order + <usize>ordered * SLOT_SIZE, s, SLOT_SIZE);
  ordered++;
  const n = used - firstExtra;
  if (n == 0) return;
  const room = orderCap - ordered, k = n < room ? n : room;
  memory.copy(order + <usize>ordered * SLOT_SIZE, slots + <usize>firstExtra * SLOT_SIZE, <usize>k * SLOT_SIZE);
  ordered += k;
}
export function extraSlots(): usize { return slots; }
export function extraCount(): u32 { return used; }
/** Bytes one segment buffer holds (headroom for the encapsulation included). */
export function segmentStride(): u32 { return stride; }

/** The gso_size of the current packet's virtio header (little-endian on this host). */
@inline export function gsoSize(): u32 { return pkt.vnet == 0 ? 0 : <u32>load<u16>(pkt.vnet + VNET_GSO_SIZE); }

/** Header bytes (IP + its extension headers + TCP with options) of the current TCP packet. */
@inline export function headerLen(): u32 { return <u32>(pkt.l4 - pkt.ip) + Tcp.at(pkt.l4).dataOffset; }

/** Fixes lengths, sequence number, flags and checksums of segment k of n (payload `len`) at p. */
function fixSegment(p: usize, hdrLen: u32, len: u32, k: u32, n: u32, seq0: u32, id0: u32, mss: u32): void {
  const tcp = p + <usize>(pkt.l4 - pkt.ip), thl = hdrLen - <u32>(pkt.l4 - pkt.ip);
  if (!pkt.v6) {
    const ihl = (ld8(p) & 15) << 2;
    st16(p + 2, hdrLen + len);
    st16(p + 4, (id0 + k) & 0xffff);          // the kernel numbers TSO segments' IDs consecutively
    st16(p + 10, 0);
    st16(p + 10, csum(p, ihl, 0));
  } else {
    st16(p + 4, hdrLen + len - 40);
  }
  st32(tcp + TCP_SEQ, seq0 + k * mss);
  let f = ld8(tcp + TCP_FLAGS);
  if (k > 0) f &= ~TCP_CWR;                  // CWR only on the first segment
  if (k < n - 1) f &= ~(TCP_FIN | TCP_PSH);   // FIN and PSH only on the last
  st8(tcp + TCP_FLAGS, f);
  const l4len = thl + len;
  st16(tcp + TCP_CHECK, 0);
  st16(tcp + TCP_CHECK, csum(tcp, l4len, pkt.v6 ? ipv6PseudoSum(p, PROTO_TCP, l4len) : ipv4PseudoSum(p, PROTO_TCP, l4len)));
}

/** Segments the current super-packet for route entry `route`: segments 1..n-1 are copied out,
 *  encapsulated and placed in extra slots; segment 0 is fixed in place (its checksums complete) and
 *  left to the caller to encapsulate. Returns false, changing nothing, when the extra slots or a
 *  segment buffer cannot hold it. */
export function segment(route: usize, encapLen: u32, peer: u32, service: u32): bool {
  const mss = gsoSize(), hdrLen = headerLen();
  if (mss == 0) return false;                      // checked before dividing: a zero traps
  const payload = pkt.ipLen - hdrLen;
  const n = (payload + mss - 1) / mss;
  if (n == 0 || used + n - 1 > cap || hdrLen + mss + encapLen > stride) return false;
  const seq0 = ld32(pkt.l4 + TCP_SEQ), id0 = pkt.v6 ? 0 : ld16(pkt.ip + 4);
  const ip0 = pkt.ip, ipLen0 = pkt.ipLen;
  for (let k: u32 = 1; k < n; k++) {
    const len = k == n - 1 ? payload - k * mss : mss;
    const buf = area + <usize>used * stride, inner = buf + encapLen;
    memory.copy(inner, ip0, hdrLen);
    memory.copy(inner + hdrLen, ip0 + hdrLen + k * mss, len);
    fixSegment(inner, hdrLen, len, k, n, seq0, id0, mss);
    pkt.retarget(inner, hdrLen + len);
    const outer = encap(route, encapLen);
    const s = slots + <usize>used * SLOT_SIZE;
    store<u32>(s + SLOT_DATA, <u32>outer);
    store<u32>(s + SLOT_LEN, hdrLen + len + encapLen);
    store<u16>(s + SLOT_FLAGS, 0);
    store<u8>(s + SLOT_VERDICT, <u8>Verdict.Overlay);
    store<u8>(s + SLOT_REASON, 0);
    store<u32>(s + SLOT_PEER, peer);
    store<u32>(s + SLOT_BUF_START, <u32>buf);
    store<u32>(s + SLOT_BUF_END, <u32>(buf + stride));
    store<u32>(s + SLOT_SERVICE, service);
    store<u32>(s + SLOT_NOTE, Note.ENCAP | Note.GSO);
    used++;
  }
  pkt.retarget(ip0, hdrLen + (n == 1 ? payload : mss));
  fixSegment(ip0, hdrLen, n == 1 ? payload : mss, 0, n, seq0, id0, mss);
  pkt.checksumsComplete();
  return true;
}
