// The packet being processed: parsed once (classify), then read through these fields by every stage.
// Module globals rather than a struct: wasm keeps them in registers-like globals, no allocation.
import { Drop, VNET_HDR_LEN } from "../abi";
import { addrFromV4Be, addrCopy, ld8, ld16, ld32, st16, st32 } from "../mem";
import { Ipv4, checkIpv4, IPV4_SRC, IPV4_DST, IPV4_CHECK } from "../wire/ipv4";
import { Ipv6Upper, checkIpv6, IPV6_SRC, IPV6_DST } from "../wire/ipv6";
import { csum, csumFold, csumReplace16, csumReplace32, csumPartialReplace32 } from "../wire/checksum";
import { ipv4PseudoSum } from "../wire/ipv4";
import { ipv6PseudoSum } from "../wire/ipv6";
import {
  PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, TCP_MIN_LEN, TCP_CHECK, UDP_LEN, UDP_CHECK,
  ICMP_MIN_LEN, ICMP_CHECK, ICMP_ID, ICMP_ECHO, ICMP_ECHO_REPLY, ICMP6_ECHO, ICMP6_ECHO_REPLY, Tcp, Udp, Icmp, L4Ports,
} from "../wire/l4";
import { PROTO_SCTP, SCTP_HLEN, sctpPortChange } from "../wire/sctp";

// virtio_net_hdr (include/uapi/linux/virtio_net.h), little-endian on this host
export const VNET_F_NEEDS_CSUM: u32 = 1;
export const VNET_FLAGS: u32 = 0, VNET_GSO_TYPE: u32 = 1, VNET_HDR_LEN_F: u32 = 2, VNET_GSO_SIZE: u32 = 4,
  VNET_CSUM_START: u32 = 6, VNET_CSUM_OFFSET: u32 = 8;
export const GSO_NONE: u32 = 0, GSO_TCPV4: u32 = 1, GSO_UDP: u32 = 3, GSO_TCPV6: u32 = 4, GSO_UDP_L4: u32 = 5, GSO_ECN: u32 = 0x80;

export const SRC: usize = memory.data(16, 16);   // source address, 16-byte form
export const DST: usize = memory.data(16, 16);   // destination address, 16-byte form
const UPPER: usize = memory.data(offsetof<Ipv6Upper>(), 8);

export let ip: usize = 0;        // first byte of the IP header
export let ipLen: u32 = 0;       // bytes of the IP packet (total length; link padding cut off)
export let v6 = false;
export let proto: u32 = 0;
export let l4: usize = 0;        // upper-layer header, 0 for a non-first fragment
export let l4Len: u32 = 0;
export let csumAt: usize = 0;    // the L4 checksum field, 0 when there is none to keep (UDP/IPv4 zero)
export let partial = false;      // csumAt holds a partial (pseudo-header) sum: virtio NEEDS_CSUM
export let vnet: usize = 0;      // virtio_net_hdr address, 0 without one
export let gso = false;
export let isFrag = false;
export let fragFirst = false;
export let fragId: u32 = 0;
export let sport: u32 = 0;       // host order; ICMP echo: identifier
export let dport: u32 = 0;       // host order; ICMP echo: 0
export let tcpFlags: u32 = 0;
export let icmpType: u32 = 0xff;
export let tracked = false;      // TCP, UDP, SCTP or ICMP echo with its ports known: conntrack applies

@inline export function ttlAt(): usize { return v6 ? ip + 7 : ip + 8; }
@inline export function ttl(): u32 { return ld8(ttlAt()); }

/** Parses the IP packet at p (len bytes). vnetHdr: address of its virtio_net_hdr or 0. */
export function classify(p: usize, len: u32, vnetHdr: usize): Drop {
  ip = p; vnet = vnetHdr; l4 = 0; l4Len = 0; csumAt = 0; partial = false; isFrag = false; fragFirst = false;
  sport = 0; dport = 0; tcpFlags = 0; icmpType = 0xff; tracked = false;
  gso = vnetHdr != 0 && (ld8(vnetHdr + VNET_GSO_TYPE) & ~GSO_ECN) != GSO_NONE;
  if (len < 1) return Drop.TooShort;
  const ver = ld8(p) >> 4;
  let off: u32 = 0;
  if (ver == 4) {
    v6 = false;
    const d = checkIpv4(p, len);
    if (d != Drop.None) return d;
    const h = Ipv4.at(p);
    ipLen = h.totalLen;
    // A GSO super-packet from TUN may say total length 0 beyond 64 KiB; we never accept that (TSO max 64K).
    proto = h.proto;
    off = h.headerLen;
    isFrag = h.moreFragments || h.fragOffset != 0;
    fragFirst = h.fragOffset == 0;
    fragId = h.id;
    addrFromV4Be(SRC, h.srcBe);
    addrFromV4Be(DST, h.dstBe);
    if (isFrag && !fragFirst) return Drop.None;
  } else if (ver == 6) {
    v6 = true;
    const u = changetype<Ipv6Upper>(UPPER);
    const d = checkIpv6(p, len, u);
    if (d != Drop.None) return d;
    ipLen = 40 + ld16(p + 4);
    proto = u.proto;
    off = u.l4;
    isFrag = u.isFragment;
    fragFirst = u.fragOffset == 0;
    fragId = u.fragId;
    addrCopy(SRC, p + IPV6_SRC);
    addrCopy(DST, p + IPV6_DST);
    if (isFrag && !fragFirst) return Drop.None;
  } else {
    return Drop.BadIpVersion;
  }
  const rest = ipLen - off;
  const at = p + off;
  if (proto == PROTO_TCP) {
    if (rest < TCP_MIN_LEN) return Drop.BadL4Header;
    const doff = Tcp.at(at).dataOffset;
    if (doff < TCP_MIN_LEN || doff > rest) return Drop.BadL4Header;
    l4 = at; l4Len = rest;
    sport = L4Ports.at(at).sport; dport = L4Ports.at(at).dport;
    tcpFlags = Tcp.at(at).flags;
    csumAt = at + TCP_CHECK;
    tracked = true;
  } else if (proto == PROTO_UDP) {
    if (rest < UDP_LEN) return Drop.BadL4Header;
    const ulen = Udp.at(at).length;
    // RFC 768: length covers header and data; a fragment's first piece carries the whole datagram's
    if (!isFrag && !gso && (ulen < UDP_LEN || ulen > rest)) return Drop.BadL4Header;
    l4 = at; l4Len = rest;
    sport = L4Ports.at(at).sport; dport = L4Ports.at(at).dport;
    // RFC 768: a zero checksum over IPv4 means "none"; it stays zero after NAT
    csumAt = (!v6 && Udp.at(at).check == 0 && !isPartialAt(at + UDP_CHECK)) ? 0 : at + UDP_CHECK;
    tracked = true;
  } else if (proto == PROTO_SCTP) {
    // RFC 9260 §3.1: a 12-byte common header, ports where TCP and UDP have them. Its CRC32c has no
    // pseudo-header (csumAt stays 0: a new address changes nothing); a new port patches it (setPort).
    if (rest < SCTP_HLEN) return Drop.BadL4Header;
    l4 = at; l4Len = rest;
    sport = L4Ports.at(at).sport; dport = L4Ports.at(at).dport;
    tracked = true;
  } else if (proto == PROTO_ICMP || proto == PROTO_ICMPV6) {
    if ((proto == PROTO_ICMP) == v6) return Drop.BadL4Header;  // ICMPv4 in IPv6 or the reverse
    if (rest < ICMP_MIN_LEN) return Drop.BadL4Header;
    l4 = at; l4Len = rest;
    icmpType = Icmp.at(at).type;
    csumAt = at + ICMP_CHECK;
    if (icmpType == (v6 ? ICMP6_ECHO : ICMP_ECHO) || icmpType == (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHO_REPLY)) {
      sport = Icmp.at(at).id; dport = 0;
      tracked = !isFrag;
    }
  }
  if (csumAt != 0) partial = isPartialAt(csumAt);
  return Drop.None;
}

/** Does the virtio header say the kernel will finish the checksum whose field is at `field`? */
@inline function isPartialAt(field: usize): bool {
  if (vnet == 0 || (ld8(vnet + VNET_FLAGS) & VNET_F_NEEDS_CSUM) == 0) return false;
  // csum_start counts from the first byte after the vnet header: the IP header on TUN, the
  // Ethernet header on TAP
  const start = <u32>load<u16>(vnet + VNET_CSUM_START), offset = <u32>load<u16>(vnet + VNET_CSUM_OFFSET);
  return vnet + VNET_HDR_LEN + start + offset == field;
}

// ── rewriting addresses and ports with RFC 1624 checksum updates ──────────────────────────

@inline function l4CsumReplace32(from: u32, to: u32): void {
  if (csumAt == 0) return;
  // ICMPv4 has no pseudo-header; ICMPv6 (RFC 4443 §2.3), TCP and UDP do.
  if (proto == PROTO_ICMP) return;
  const c = ld16(csumAt);
  if (partial) { st16(csumAt, csumPartialReplace32(c, from, to)); return; }
  let n = csumReplace32(c, from, to);
  if (proto == PROTO_UDP && n == 0) n = 0xffff;   // RFC 768: a computed zero is sent as all ones
  st16(csumAt, n);
}

/** Sets the source (isSrc) or destination address to the 16-byte addr, patching every checksum. */
export function setAddr(isSrc: bool, addr: usize): void {
  if (!v6) {
    const field = ip + (isSrc ? IPV4_SRC : IPV4_DST);
    const from = ld32(field), to = ld32(addr + 12);
    if (from == to) return;
    st32(field, to);
    st16(ip + IPV4_CHECK, csumReplace32(ld16(ip + IPV4_CHECK), from, to));
    l4CsumReplace32(from, to);
  } else {
    const field = ip + (isSrc ? IPV6_SRC : IPV6_DST);
    for (let i: usize = 0; i < 16; i += 4) {
      const from = ld32(field + i), to = ld32(addr + i);
      if (from != to) { st32(field + i, to); l4CsumReplace32(from, to); }
    }
  }
  addrCopy(isSrc ? SRC : DST, addr);
}

/** Sets the source or destination port (ICMP echo: the identifier), patching the L4 checksum.
 *  A partial checksum covers only the pseudo-header, so it needs no change for ports. SCTP's
 *  CRC32c covers the whole packet: a fragment's cannot be patched (the kernel NATs SCTP after
 *  reassembly; an association sets DF and discovers the path MTU, RFC 9260 §7.3). */
export function setPort(isSrc: bool, port: u32): void {
  if (l4 == 0) return;
  const at = proto == PROTO_TCP || proto == PROTO_UDP || proto == PROTO_SCTP ? l4 + (isSrc ? 0 : 2) : (isSrc ? l4 + ICMP_ID : 0);
  if (at == 0) return;
  const from = ld16(at);
  if (from == port) return;
  st16(at, port);
  if (proto == PROTO_SCTP) {
    if (!isFrag) sctpPortChange(l4, l4Len, isSrc ? 0 : 2, from, port);
  } else if (csumAt != 0 && !partial) {
    let n = csumReplace16(ld16(csumAt), from, port);
    if (proto == PROTO_UDP && n == 0) n = 0xffff;
    st16(csumAt, n);
  }
  if (isSrc) sport = port; else dport = port;
}

/** Finishes a partial checksum as the kernel would (sum from csum_start to the end, the field holding
 *  the pseudo-header sum, complemented): for a packet that leaves where no offload will finish it. */
/** Points the packet view at a copy (a GSO segment) of `len` bytes at p with the same headers. */
export function retarget(p: usize, len: u32): void {
  const shift = p - ip;
  l4 += shift; if (csumAt != 0) csumAt += shift;
  ip = p; ipLen = len;
}

/** The checksums were computed in full (segmentation): nothing is left for the kernel. */
export function checksumsComplete(): void { partial = false; }

/**
 * A decapsulated TCP/UDP packet whose checksum field holds only the pseudo-header sum: its sender
 * left the checksum to offload (CHECKSUM_PARTIAL) and nothing computed it, as happens when the
 * kernel's vxlan sends over a veth or a virtio NIC that passes the offload on to the receiving VM.
 * The kernel's own vxlan receiver gets the offload state with the skb; a UDP socket gets only the
 * bytes. Such a field is completed here (the sum over the data); a real checksum that equals the
 * pseudo-header sum by chance (1 in 65,536) is recomputed to the same value. Returns whether it
 * completed one. Whole datagrams only: a fragment's checksum covers bytes it does not have.
 */
export function completeOffloadedChecksum(): bool {
  if (vnet != 0 || isFrag || csumAt == 0 || (proto != PROTO_TCP && proto != PROTO_UDP)) return false;
  const pseudo = v6 ? ipv6PseudoSum(ip, proto, l4Len) : ipv4PseudoSum(ip, proto, l4Len);
  if (<u32>ld16(csumAt) != csumFold(pseudo)) return false;
  st16(csumAt, 0);
  let c = csum(l4, l4Len, pseudo);
  if (proto == PROTO_UDP && c == 0) c = 0xffff;   // RFC 768: a computed zero is sent as all ones
  st16(csumAt, c);
  return true;
}

export function completePartial(): void {
  if (!partial || csumAt == 0) return;
  const start = vnet + VNET_HDR_LEN + <usize>load<u16>(vnet + VNET_CSUM_START), end = ip + ipLen;
  if (start >= csumAt || end <= csumAt + 1) return;
  let c = csum(start, <u32>(end - start), 0);
  if (proto == PROTO_UDP && c == 0) c = 0xffff;   // RFC 768: a computed zero is sent as all ones
  st16(csumAt, c);
  partial = false;
}
