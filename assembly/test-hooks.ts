// Test-only exports: each header of wire/ on its own, with no tables and no pipeline, so a routing
// bug cannot fail a header test (test/unit/wire/*.test.ts), as smoltcp's src/wire tests do.
// A decode hook runs the header's check and, when it passes, writes what the view's accessors
// return at `out`, one u32 each in the order its comment lists (a pointer as its offset from the
// header); it returns the check's Drop. An emit hook writes the header with the emit function.
import { Drop } from "./abi";
import { ld16, st16 } from "./mem";
import { csum } from "./wire/checksum";
import { Ipv4, checkIpv4, emitIpv4, ipv4PseudoSum } from "./wire/ipv4";
import { Ipv6, Ipv6Upper, checkIpv6, emitIpv6 } from "./wire/ipv6";
import { L4Ports, Tcp, Udp, Icmp, emitTcp, emitUdp, emitIcmp, PROTO_TCP, TCP_CHECK, TCP_MIN_LEN, ICMP_CHECK } from "./wire/l4";
import { Ethernet, checkEthernet, emitEthernet } from "./wire/ethernet";
import { Arp, checkArp, emitArpReply } from "./wire/arp";
import { Vxlan, checkVxlan, emitVxlan } from "./wire/vxlan";
import { CtBinding, emitCtNew, emitCtDelete } from "./wire/ctnetlink";
import { Sctp, SCTP_HLEN, crc32c, sctpChecksum, sctpPortChange } from "./wire/sctp";

const UPPER: usize = memory.data(offsetof<Ipv6Upper>(), 8);

@inline function put(out: usize, i: u32, v: u32): void { store<u32>(out + (<usize>i << 2), v); }

/** The RFC 1071 checksum field value of `len` bytes at `addr` (test/unit/wire/checksum.test.ts). */
export function csumForTest(addr: usize, len: u32): u32 { return csum(addr, len, 0); }

/** checkIpv4; version, headerLen, totalLen, id, dontFragment, moreFragments, fragOffset, ttl,
 *  proto, check, src, dst (addresses in host order). */
export function ipv4DecodeForTest(p: usize, len: u32, out: usize): Drop {
  const d = checkIpv4(p, len);
  if (d != Drop.None) return d;
  const h = Ipv4.at(p);
  put(out, 0, h.version); put(out, 1, h.headerLen); put(out, 2, h.totalLen); put(out, 3, h.id);
  put(out, 4, <u32>h.dontFragment); put(out, 5, <u32>h.moreFragments); put(out, 6, h.fragOffset); put(out, 7, h.ttl);
  put(out, 8, h.proto); put(out, 9, h.check); put(out, 10, h.src); put(out, 11, h.dst);
  return d;
}

/** emitIpv4 with the addresses given in host order. */
export function ipv4EmitForTest(p: usize, totalLen: u32, id: u32, df: bool, ttl: u32, proto: u32, src: u32, dst: u32): void {
  emitIpv4(p, totalLen, id, df, ttl, proto, bswap<u32>(src), bswap<u32>(dst));
}

/** checkIpv6; version, payloadLen, next, hopLimit, src, dst (offsets), then what the walk over
 *  the extension headers found: l4 (offset), proto, isFragment, fragOffset, moreFragments, fragId. */
export function ipv6DecodeForTest(p: usize, len: u32, out: usize): Drop {
  const u = changetype<Ipv6Upper>(UPPER);
  const d = checkIpv6(p, len, u);
  if (d != Drop.None) return d;
  const h = Ipv6.at(p);
  put(out, 0, h.version); put(out, 1, h.payloadLen); put(out, 2, h.next); put(out, 3, h.hopLimit);
  put(out, 4, <u32>(h.srcPtr - p)); put(out, 5, <u32>(h.dstPtr - p));
  put(out, 6, u.l4); put(out, 7, u.proto); put(out, 8, <u32>u.isFragment); put(out, 9, u.fragOffset);
  put(out, 10, <u32>u.moreFragments); put(out, 11, u.fragId);
  return d;
}

export function ipv6EmitForTest(p: usize, payloadLen: u32, next: u32, hopLimit: u32, src: usize, dst: usize): void {
  emitIpv6(p, payloadLen, next, hopLimit, src, dst);
}

/** sport, dport, seq, ack, dataOffset, flags. */
export function tcpDecodeForTest(p: usize, out: usize): void {
  put(out, 0, L4Ports.at(p).sport); put(out, 1, L4Ports.at(p).dport); put(out, 2, Tcp.at(p).seq);
  put(out, 3, Tcp.at(p).ack); put(out, 4, Tcp.at(p).dataOffset); put(out, 5, Tcp.at(p).flags);
}

/** emitTcp at ip + 20 (a 20-byte IPv4 header at ip, no options), then its checksum over the IPv4
 *  pseudo-header, as the core's RST is finished (pipeline/reply.ts). */
export function tcpEmitForTest(ip: usize, sport: u32, dport: u32, seq: u32, ack: u32, flags: u32): void {
  const l4 = ip + 20;
  emitTcp(l4, sport, dport, seq, ack, flags);
  st16(l4 + TCP_CHECK, csum(l4, TCP_MIN_LEN, ipv4PseudoSum(ip, PROTO_TCP, TCP_MIN_LEN)));
}

/** sport, dport, length, check. */
export function udpDecodeForTest(p: usize, out: usize): void {
  put(out, 0, L4Ports.at(p).sport); put(out, 1, L4Ports.at(p).dport); put(out, 2, Udp.at(p).length); put(out, 3, Udp.at(p).check);
}

export function udpEmitForTest(p: usize, sport: u32, dport: u32, length: u32, check: u32): void {
  emitUdp(p, sport, dport, length, check);
}

/** type, code, check, rest, id, seq. */
export function icmpDecodeForTest(p: usize, out: usize): void {
  const h = Icmp.at(p);
  put(out, 0, h.type); put(out, 1, h.code); put(out, 2, h.check); put(out, 3, h.rest); put(out, 4, h.id); put(out, 5, h.seq);
}

/** emitIcmp, then the ICMPv4 checksum over the `len` bytes of the message (RFC 792: no pseudo-header). */
export function icmpEmitForTest(p: usize, len: u32, type: u32, code: u32, rest: u32): void {
  emitIcmp(p, type, code, rest);
  st16(p + ICMP_CHECK, csum(p, len, 0));
}

/** checkEthernet; dst, src (offsets), type. */
export function ethernetDecodeForTest(p: usize, len: u32, out: usize): Drop {
  const d = checkEthernet(len);
  if (d != Drop.None) return d;
  const h = Ethernet.at(p);
  put(out, 0, <u32>(h.dstPtr - p)); put(out, 1, <u32>(h.srcPtr - p)); put(out, 2, h.type);
  return d;
}

export function ethernetEmitForTest(p: usize, dstMac: usize, srcMac: usize, type: u32): void {
  emitEthernet(p, dstMac, srcMac, type);
}

/** checkArp; oper, senderIp, targetIp (host order), senderMac, targetMac (offsets). */
export function arpDecodeForTest(p: usize, len: u32, out: usize): Drop {
  const d = checkArp(p, len);
  if (d != Drop.None) return d;
  const h = Arp.at(p);
  put(out, 0, h.oper); put(out, 1, h.senderIp); put(out, 2, h.targetIp);
  put(out, 3, <u32>(h.senderMacPtr - p)); put(out, 4, <u32>(h.targetMacPtr - p));
  return d;
}

/** emitArpReply: the request at p becomes "its target address is at myMac", in place. */
export function arpReplyForTest(p: usize, myMac: usize): void { emitArpReply(p, myMac); }

/** checkVxlan; flags, vni. */
export function vxlanDecodeForTest(p: usize, len: u32, out: usize): Drop {
  const d = checkVxlan(p, len);
  if (d != Drop.None) return d;
  put(out, 0, Vxlan.at(p).flags); put(out, 1, Vxlan.at(p).vni);
  return d;
}

export function vxlanEmitForTest(p: usize, vni: u32): void { emitVxlan(p, vni); }

/** emitCtNew (then emitCtDelete at p + its length when withDelete) for a binding whose addresses lie
 *  at src/dst/backend/masq (16 bytes each, masq 0: no SNAT); returns the bytes written. */
export function ctNewForTest(p: usize, seq: u32, src: usize, dst: usize, sport: u32, dport: u32, proto: u32,
  backend: usize, backendPort: u32, masq: usize, timeoutSec: u32, mark: u32, tcpState: u32, withDelete: bool): u32 {
  CT_B.src = src; CT_B.dst = dst; CT_B.sport = sport; CT_B.dport = dport; CT_B.proto = proto;
  CT_B.backend = backend; CT_B.backendPort = backendPort; CT_B.masqAddr = masq;
  CT_B.timeoutSec = timeoutSec; CT_B.mark = mark; CT_B.tcpState = <u8>tcpState;
  const n = emitCtNew(p, seq, CT_B);
  return withDelete ? n + emitCtDelete(p + n, seq + 1, CT_B) : n;
}
const CT_B = changetype<CtBinding>(memory.data(offsetof<CtBinding>(), 8));

/** CRC32c of `len` bytes at p (RFC 9260 Appendix A; test vectors of RFC 3720 B.4). */
export function crc32cForTest(p: usize, len: u32): u32 { return crc32c(p, len); }

/** The SCTP common header of `len` bytes at p: sport, dport, vtag, check (as stored), and the
 *  checksum the packet should carry; Drop.TooShort below 12 bytes. */
export function sctpDecodeForTest(p: usize, len: u32, out: usize): Drop {
  if (len < SCTP_HLEN) return Drop.TooShort;
  const h = Sctp.at(p);
  put(out, 0, h.sport); put(out, 1, h.dport); put(out, 2, h.vtag); put(out, 3, h.check); put(out, 4, sctpChecksum(p, len));
  return Drop.None;
}

/** Writes port `to` at `off` (0 or 2) of the SCTP packet at p and patches its checksum as NAT does. */
export function sctpSetPortForTest(p: usize, len: u32, off: u32, to: u32): void {
  const from = <u32>ld16(p + off);
  sctpPortChange(p, len, off, from, to);
  st16(p + off, to);
}
