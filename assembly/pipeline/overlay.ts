// VXLAN (RFC 7348) in the Linux/flannel convention: outer IPv4/UDP to the remote node's underlay
// address, VNI and port from the config, inner Ethernet addressed to the remote VTEP's MAC.
import { Drop, Note, SLOT_BUF_END, SLOT_DATA, SLOT_LEN, SLOT_NOTE, SLOT_SIZE, SLOT_VERDICT, Verdict, VNET_HDR_LEN } from "../abi";
import { ld8, ld16, ld32, st8, st16 } from "../mem";
import { csum, csumFold } from "../wire/checksum";
import { checkVxlan, emitVxlan, Vxlan, VXLAN_HLEN } from "../wire/vxlan";
import { emitEthernet, ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6 } from "../wire/ethernet";
import { emitIpv4, IPV4_MIN_LEN, ipv4PseudoSum } from "../wire/ipv4";
import { PROTO_UDP, UDP_LEN, Tcp, emitUdp } from "../wire/l4";
import { ipv6PseudoSum } from "../wire/ipv6";
import { peerKnown, R_MAC, R_UNDERLAY } from "../table/generation";
import { CONFIG, nextIpId, underlayIp, underlayMtu, vni, vxlanPort, TUNNEL_MAC } from "../state";
import { CFG_VTEP_MAC } from "../abi";
import { hashTuple } from "../table/hash";
import * as pkt from "./packet";
import { GSO_ECN, GSO_TCPV4, GSO_TCPV6, VNET_CSUM_OFFSET, VNET_CSUM_START, VNET_F_NEEDS_CSUM, VNET_FLAGS, VNET_GSO_SIZE, VNET_GSO_TYPE, VNET_HDR_LEN_F } from "./packet";

export const ENCAP_LEN: u32 = IPV4_MIN_LEN + UDP_LEN + VXLAN_HLEN + ETH_HLEN;   // 50
const OUTER_TTL: u32 = 64;

/** Checks the VXLAN header at p and the sender; on success the inner frame starts at p + 8. */
export function checkDecap(g: usize, p: usize, len: u32, peer: u32): Drop {
  const d = checkVxlan(p, len);
  if (d != Drop.None) return d;
  if (Vxlan.at(p).vni != vni) return Drop.UnknownVni;
  if (!peerKnown(g, peer)) return Drop.UnknownPeer;
  if (len < VXLAN_HLEN + ETH_HLEN) return Drop.BadEthernet;
  const et = ld16(p + VXLAN_HLEN + 12);
  if (et != ETH_P_IPV4 && et != ETH_P_IPV6) return Drop.BadEthernet;
  return Drop.None;
}

/** RFC 7348 §5: the outer source port is a hash of the inner flow, in the dynamic range. */
function flowPort(): u32 {
  const h = hashTuple(pkt.SRC, pkt.DST, (<u64>pkt.sport << 32) | (<u64>pkt.dport << 16) | <u64>pkt.proto);
  return 49152 + (h & 0x3fff);
}

/** Prepends outer IPv4/UDP/VXLAN/Ethernet before the current packet (room bytes are free there)
 *  for route entry `route`; returns the outer packet's start or 0 when there is no room. */
export function encap(route: usize, room: u32): usize {
  if (room < ENCAP_LEN) return 0;
  const inner = pkt.ip, innerLen = pkt.ipLen;
  const eth = inner - ETH_HLEN, vx = eth - VXLAN_HLEN, udp = vx - UDP_LEN, outer = udp - IPV4_MIN_LEN;
  emitEthernet(eth, route + R_MAC, CONFIG + CFG_VTEP_MAC, pkt.v6 ? ETH_P_IPV6 : ETH_P_IPV4);
  emitVxlan(vx, vni);
  // RFC 7348 §5: the UDP checksum SHOULD be zero over IPv4; Linux receivers accept it.
  emitUdp(udp, flowPort(), vxlanPort, UDP_LEN + VXLAN_HLEN + ETH_HLEN + innerLen, 0);
  emitIpv4(outer, ENCAP_LEN + innerLen, nextIpId(), false, OUTER_TTL, PROTO_UDP,
    bswap<u32>(underlayIp), bswap<u32>(load<u32>(route + R_UNDERLAY)));
  return outer;
}

/** Writes the virtio_net_hdr of a TCP GSO packet at v: NEEDS_CSUM at TCP's checksum field (the
 *  field holds the folded pseudo-header sum, the kernel adds the rest), gso_size mss; csumStart is
 *  the TCP header's offset and hdrLen the bytes through it, both from the first byte after the
 *  header as the device sees it. The bytes after the 10-byte header are left as they are. */
function writeTcpGsoHeader(v: usize, v6: bool, hdrLen: u32, mss: u32, csumStart: u32): void {
  store<u8>(v + VNET_FLAGS, <u8>VNET_F_NEEDS_CSUM);
  store<u8>(v + VNET_GSO_TYPE, <u8>(v6 ? GSO_TCPV6 : GSO_TCPV4));
  store<u16>(v + VNET_HDR_LEN_F, <u16>hdrLen);
  store<u16>(v + VNET_GSO_SIZE, <u16>mss);
  store<u16>(v + VNET_CSUM_START, <u16>csumStart);
  store<u16>(v + VNET_CSUM_OFFSET, 16);
}

// ── UDP-tunnel GSO: a TSO packet crosses the underlay whole ─────────────────────────────────
// Linux 6.17 lets a TUN/TAP writer hand over a packet that is already encapsulated in UDP together
// with the inner TCP's offload (virtio_net_hdr_v1_hash_tunnel, TUN_F_UDP_TUNNEL_GSO), as a
// virtio NIC does for a guest's vxlan. The kernel then treats it like its own vxlan device's
// output: forwarded whole to the underlay, cut into wire-sized frames only by a NIC (or by
// software GSO before a device that cannot), never copied or cut by us. The frame: this header
// (24 bytes), an Ethernet header addressed to the TAP, the outer IPv4/UDP/VXLAN/Ethernet, the
// inner packet with its partial checksum. Offsets count from the Ethernet header.
export const TNL_HDR_LEN: u32 = 24;
const GSO_UDP_TUNNEL_IPV4: u32 = 0x20;
const TNL_OUTER_TH: u32 = 20, TNL_INNER_NH: u32 = 22;
/** Largest outer IPv4 packet: its total length is 16 bits. */
const MAX_OUTER_LEN: u32 = 65535;

/** Encapsulates the current GSO packet once for route `route` as a tunnel-GSO frame (see above),
 *  whose segments (gso_size payload + headers + ENCAP_LEN) the caller checked against the underlay
 *  MTU. Returns the frame's start (its vnet header), 0 when it cannot go this way: no room, too
 *  long for one outer packet, a checksum not left to offload, ECN (refused with a tunnel). */
export function encapTunnelGso(route: usize, room: u32, mss: u32): usize {
  if (room < ENCAP_LEN + ETH_HLEN + TNL_HDR_LEN || pkt.ipLen + ENCAP_LEN > MAX_OUTER_LEN) return 0;
  if (!pkt.partial || pkt.vnet == 0 || (<u32>ld8(pkt.vnet + VNET_GSO_TYPE) & GSO_ECN) != 0) return 0;
  const outer = encap(route, room);
  if (outer == 0) return 0;
  const eth = outer - ETH_HLEN, v = eth - TNL_HDR_LEN;
  emitEthernet(eth, TUNNEL_MAC, CONFIG + CFG_VTEP_MAC, ETH_P_IPV4);
  memory.fill(v, 0, TNL_HDR_LEN);
  const l4off = <u32>(pkt.l4 - eth);
  // the virtio spec: hdr_len covers every header through the inner transport one
  writeTcpGsoHeader(v, pkt.v6, l4off + Tcp.at(pkt.l4).dataOffset, mss, l4off);
  store<u8>(v + VNET_GSO_TYPE, load<u8>(v + VNET_GSO_TYPE) | <u8>GSO_UDP_TUNNEL_IPV4);
  store<u16>(v + TNL_OUTER_TH, <u16>(ETH_HLEN + IPV4_MIN_LEN));
  store<u16>(v + TNL_INNER_NH, <u16>(ETH_HLEN + ENCAP_LEN));
  return v;
}

/**
 * The receiving side: a decapsulated TCP packet (at ip, len bytes) longer than the pods' MTU whose
 * checksum field still holds the pseudo-header sum is a peer's TSO packet that crossed the
 * underlay whole (wasp's tunnel GSO, or Linux vxlan over a veth). Instead of being cut, it gets a
 * virtio_net_hdr (TCP GSO, NEEDS_CSUM, gso_size: the segments the pods' MTU allows) in the
 * VNET_HDR_LEN bytes before ip, where the inner Ethernet header was, and goes to the TUN whole, as
 * the kernel's vxlan receiver passes it on. Returns the header's address, 0 when it is no such packet.
 */
export function wholeTsoHeader(ip: usize, len: u32): usize {
  const innerMtu = underlayMtu - ENCAP_LEN;
  if (len <= innerMtu || len < 60) return 0;
  const ver = ld8(ip) >> 4;
  let ipHl: u32 = 0;
  if (ver == 4) {
    ipHl = (ld8(ip) & 15) << 2;
    if (ipHl < 20 || ld8(ip + 9) != 6 || ld16(ip + 2) != len || (ld16(ip + 6) & 0x3fff) != 0) return 0;
  } else if (ver == 6) {
    ipHl = 40;
    if (ld8(ip + 6) != 6 || 40 + ld16(ip + 4) != len) return 0;
  } else return 0;
  if (ipHl + 20 > len) return 0;
  const tcp = ip + ipHl, thl = <u32>(ld8(tcp + 12) >> 4) << 2;
  if (thl < 20 || ipHl + thl >= len || ipHl + thl + 8 > innerMtu) return 0;
  const l4len = len - ipHl;
  const pseudo = ver == 4 ? ipv4PseudoSum(ip, 6, l4len) : ipv6PseudoSum(ip, 6, l4len);
  if (<u32>ld16(tcp + 16) != csumFold(pseudo)) return 0;
  const v = ip - VNET_HDR_LEN;
  writeTcpGsoHeader(v, ver == 6, ipHl + thl, innerMtu - ipHl - thl, ipHl);
  return v;
}

// ── receive-side coalescing (what GRO does for the kernel's vxlan) ──────────────────────────
// Consecutive in-order TCP segments of one flow that came through the tunnel and go to a vnet TUN
// become one GSO packet (virtio_net_hdr TCPV4, gso_size = the first segment's payload), so the node
// forwards, and the pod's TCP receives, one packet instead of up to 45. The kernel's rules
// (tcp_gro_receive): same addresses, ports, ACK number, window, header length and options, TOS, TTL
// and DF; the next sequence number; only ACK (PSH ends a run and is kept); a segment no longer
// than the first (a shorter one ends the run). Only segments whose TCP checksum verifies are
// merged: the kernel takes the merged packet as CHECKSUM_PARTIAL and never checks it again.
const TCP_ACK_ONLY: u32 = 0x10, TCP_PSH_BIT: u32 = 0x08;
const MAX_GSO_LEN: u32 = 65535;

/** Payload bytes of the TCP segment at ip (len bytes, an IPv4 packet) when it may be coalesced,
 *  else -1: IPv4 without options or fragmentation, TCP with ACK or ACK|PSH only, data, checksum good. */
function coalescable(ip: usize, len: u32): i32 {
  if (len < 40 || ld8(ip) != 0x45 || ld8(ip + 9) != 6 || ld16(ip + 2) != len || (ld16(ip + 6) & 0x3fff) != 0) return -1;
  const tcp = ip + 20, thl = (ld8(tcp + 12) >> 4) << 2, flags = ld8(tcp + 13);
  if (thl < 20 || thl + 20 >= len) return -1;
  if (flags != TCP_ACK_ONLY && flags != (TCP_ACK_ONLY | TCP_PSH_BIT)) return -1;
  const l4len = len - 20;
  if (csum(tcp, l4len, ipv4PseudoSum(ip, 6, l4len)) != 0) return -1;
  return <i32>(l4len - thl);
}

/** Same flow and header as the run's head at h: everything the kernel compares. */
function sameFlow(h: usize, p: usize): bool {
  const ht = h + 20, pt = p + 20, thl = (ld8(ht + 12) >> 4) << 2;
  if (load<u64>(h + 12) != load<u64>(p + 12) || load<u32>(ht) != load<u32>(pt)) return false;   // addresses, ports
  if (load<u32>(ht + 8) != load<u32>(pt + 8) || load<u16>(ht + 14) != load<u16>(pt + 14)) return false;  // ACK, window
  if (ld8(ht + 12) != ld8(pt + 12) || ld8(h + 1) != ld8(p + 1) || ld8(h + 8) != ld8(p + 8)) return false;  // hlen, TOS, TTL
  if ((ld8(h + 6) & 0x40) != (ld8(p + 6) & 0x40)) return false;                                 // DF
  return thl == 20 || memory.compare(ht + 20, pt + 20, thl - 20) == 0;                          // options
}

/** Turns the head at ip (merged total `len`, first payload `mss`) into a GSO packet for the TUN. */
function finishRun(ip: usize, len: u32, mss: u32, vnetAt: usize, psh: bool): void {
  st16(ip + 2, len);
  st16(ip + 10, 0);
  st16(ip + 10, csum(ip, 20, 0));
  const tcp = ip + 20, thl = (ld8(tcp + 12) >> 4) << 2;
  if (psh) st8(tcp + 13, ld8(tcp + 13) | TCP_PSH_BIT);
  st16(tcp + 16, csumFold(ipv4PseudoSum(ip, 6, len - 20)));
  const csumStart = <u32>(ip - vnetAt) - VNET_HDR_LEN + 20;
  writeTcpGsoHeader(vnetAt, false, csumStart + thl, mss, csumStart);
}

/**
 * Coalesces runs of decapsulated TCP segments among the `count` slots at `slots` after process(),
 * for a TUN (link 0) or TAP (link = Ethernet header bytes) opened with a vnet header whose headers
 * the host has zeroed. A merged slot's verdict becomes None: its payload left in the slot before
 * it. Returns how many slots were merged away.
 */
export function coalesceDecapped(slots: usize, count: u32, link: u32): u32 {
  let head: usize = 0, hIp: usize = 0, hLen: u32 = 0, mss: u32 = 0, nextSeq: u32 = 0, runMerged: u32 = 0, merged: u32 = 0;
  let psh = false;
  for (let i: u32 = 0; i <= count; i++) {
    const s = slots + <usize>i * SLOT_SIZE;
    let ip: usize = 0, len: u32 = 0, payload: i32 = -1;
    if (i < count && load<u8>(s + SLOT_VERDICT) == <u8>Verdict.Tun &&
        (load<u32>(s + SLOT_NOTE) & (Note.DECAP | Note.REPLY_MADE | Note.GSO)) == Note.DECAP && load<u32>(s + SLOT_LEN) > link) {
      ip = <usize>load<u32>(s + SLOT_DATA) + link; len = load<u32>(s + SLOT_LEN) - link;
      payload = coalescable(ip, len);
    }
    if (head != 0 && payload > 0 && !psh && <u32>payload <= mss && ld32(ip + 24) == nextSeq && sameFlow(hIp, ip) &&
        hLen + <u32>payload <= MAX_GSO_LEN && hIp + hLen + <usize>payload <= <usize>load<u32>(head + SLOT_BUF_END)) {
      const thl = (ld8(ip + 32) >> 4) << 2;
      memory.copy(hIp + hLen, ip + 20 + thl, <usize>payload);
      hLen += <u32>payload; nextSeq += <u32>payload; runMerged++; merged++;
      if ((ld8(ip + 33) & TCP_PSH_BIT) != 0) psh = true;
      store<u8>(s + SLOT_VERDICT, <u8>Verdict.None);
      store<u32>(head + SLOT_LEN, hLen + link);
      if (<u32>payload < mss) { finishRun(hIp, hLen, mss, <usize>load<u32>(head + SLOT_DATA) - VNET_HDR_LEN, psh); head = 0; }
      continue;
    }
    if (head != 0 && runMerged > 0) finishRun(hIp, hLen, mss, <usize>load<u32>(head + SLOT_DATA) - VNET_HDR_LEN, psh);
    head = 0;
    if (payload > 0 && (ld8(ip + 33) & TCP_PSH_BIT) == 0) {
      head = s; hIp = ip; hLen = len; mss = <u32>payload; nextSeq = ld32(ip + 24) + <u32>payload; runMerged = 0; psh = false;
    }
  }
  return merged;
}
