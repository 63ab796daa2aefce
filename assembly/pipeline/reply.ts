// Answers the core makes itself: ICMP errors (RFC 792 / RFC 4443), TCP RST (RFC 793 "Reset
// Generation"), echo replies for service VIPs. Each is built in place: an error goes into the
// headroom before the offending packet and quotes it; RST and echo reply reuse its bytes.
import { ld8, ld32, st8, st16, addrCopy, addrIsZero } from "../mem";
import { csum } from "../wire/checksum";
import { emitIpv4, ipv4PseudoSum, IPV4_MIN_LEN } from "../wire/ipv4";
import { emitIpv6, ipv6PseudoSum, IPV6_HLEN } from "../wire/ipv6";
import {
  emitIcmp, emitTcp, ICMP_CHECK, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, TCP_ACKF, TCP_CHECK, TCP_FIN, TCP_RST, TCP_SYN,
  ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ICMP_PARAM_PROBLEM, ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG,
  ICMP6_TIME_EXCEEDED, ICMP6_PARAM_PROBLEM, ICMP_ECHO, ICMP6_ECHO, ICMP_ECHO_REPLY, ICMP6_ECHO_REPLY, Tcp,
} from "../wire/l4";
import * as pkt from "./packet";
import { nextIpId } from "../state";

// RFC 1812 §4.3.2.3: an ICMPv4 error quotes as much as fits in 576 bytes; RFC 4443 §2.4(c): an
// ICMPv6 error fits in the minimum MTU, 1280.
const V4_ERROR_MAX: u32 = 576, V6_ERROR_MAX: u32 = 1280;
const DEFAULT_TTL: u32 = 64;
const CLIENT: usize = memory.data(16, 16);

export let outIp: usize = 0;
export let outLen: u32 = 0;

/** RFC 1812 §4.3.2.7 / RFC 4443 §2.4(e): never answer an error with an error, nor a fragment
 *  other than the first, nor a packet from an unspecified, multicast or broadcast source, nor one
 *  sent to a multicast or the limited broadcast address (an MLD report to ff02::16 has hop limit 1
 *  by design, RFC 3810 §5). RFC 4443 §2.4(e.3) allows, not requires, a packet too big about an
 *  IPv6 multicast packet: none is sent. */
export function mayAnswerWithError(): bool {
  if (pkt.isFrag && !pkt.fragFirst) return false;
  if (pkt.proto == PROTO_ICMP && (pkt.icmpType == ICMP_DEST_UNREACH || pkt.icmpType == ICMP_TIME_EXCEEDED ||
      pkt.icmpType == ICMP_PARAM_PROBLEM || pkt.icmpType == 4 || pkt.icmpType == 5)) return false;
  if (pkt.proto == PROTO_ICMPV6 && pkt.icmpType < 128) return false;
  if (addrIsZero(pkt.SRC)) return false;
  if (!pkt.v6) {
    const s = ld32(pkt.SRC + 12), d = ld32(pkt.DST + 12);
    if ((s >>> 28) == 0xe || s == 0xffffffff || s == 0) return false;
    if ((d >>> 28) == 0xe || d == 0xffffffff) return false;
  } else if (ld8(pkt.SRC) == 0xff || ld8(pkt.DST) == 0xff) return false;
  return true;
}

/** Builds an ICMP error about the current packet in the `room` bytes before it, from `from`
 *  (16-byte address) to the packet's source. v4: type/code/rest; v6 the same fields of RFC 4443. */
export function makeIcmpError(room: u32, from: usize, type: u32, code: u32, rest: u32): bool {
  const quoted0 = pkt.ipLen;
  if (!pkt.v6) {
    const hdr = IPV4_MIN_LEN + 8;
    if (room < hdr) return false;
    const quoted = quoted0 < V4_ERROR_MAX - hdr ? quoted0 : V4_ERROR_MAX - hdr;
    const p = pkt.ip - hdr;
    emitIpv4(p, hdr + quoted, nextIpId(), false, DEFAULT_TTL, PROTO_ICMP, load<u32>(from, 12), load<u32>(pkt.SRC, 12));
    emitIcmp(p + IPV4_MIN_LEN, type, code, rest);
    st16(p + IPV4_MIN_LEN + ICMP_CHECK, csum(p + IPV4_MIN_LEN, 8 + quoted, 0));
    outIp = p; outLen = hdr + quoted;
  } else {
    const hdr = IPV6_HLEN + 8;
    if (room < hdr) return false;
    const quoted = quoted0 < V6_ERROR_MAX - hdr ? quoted0 : V6_ERROR_MAX - hdr;
    const p = pkt.ip - hdr;
    // the source address is read before the new header may overwrite nothing: it lies after p+hdr
    emitIpv6(p, 8 + quoted, PROTO_ICMPV6, DEFAULT_TTL, from, pkt.SRC);
    emitIcmp(p + IPV6_HLEN, type, code, rest);
    st16(p + IPV6_HLEN + ICMP_CHECK, csum(p + IPV6_HLEN, 8 + quoted, ipv6PseudoSum(p, PROTO_ICMPV6, 8 + quoted)));
    outIp = p; outLen = hdr + quoted;
  }
  return true;
}

/** ICMP port unreachable (RFC 792 type 3 code 3 / RFC 4443 type 1 code 4), from the address the
 *  client asked for, so the client's stack matches it to its socket. */
export function makePortUnreachable(room: u32, from: usize): bool {
  return pkt.v6 ? makeIcmpError(room, from, ICMP6_DEST_UNREACH, 4, 0) : makeIcmpError(room, from, ICMP_DEST_UNREACH, 3, 0);
}

export function makeTimeExceeded(room: u32, from: usize): bool {
  return pkt.v6 ? makeIcmpError(room, from, ICMP6_TIME_EXCEEDED, 0, 0) : makeIcmpError(room, from, ICMP_TIME_EXCEEDED, 0, 0);
}

/** RFC 1191 fragmentation needed with the next-hop MTU / RFC 8201 packet too big. */
export function makeTooBig(room: u32, from: usize, mtu: u32): bool {
  return pkt.v6 ? makeIcmpError(room, from, ICMP6_PACKET_TOO_BIG, 0, mtu) : makeIcmpError(room, from, ICMP_DEST_UNREACH, 4, mtu & 0xffff);
}

/** Replaces the current TCP segment with the RST that RFC 793 §3.4 prescribes, from `from`. */
export function makeRst(from: usize): bool {
  if (pkt.proto != PROTO_TCP || pkt.l4 == 0) return false;
  const flags = pkt.tcpFlags;
  if ((flags & TCP_RST) != 0) return false;     // never answer a RST
  const t = Tcp.at(pkt.l4);
  const segLen = pkt.l4Len - t.dataOffset + ((flags & TCP_SYN) != 0 ? 1 : 0) + ((flags & TCP_FIN) != 0 ? 1 : 0);
  let seq: u32 = 0, ack: u32 = 0, outFlags: u32 = TCP_RST;
  if ((flags & TCP_ACKF) != 0) seq = t.ack;
  else { ack = t.seq + segLen; outFlags |= TCP_ACKF; }
  const sp = pkt.sport, dp = pkt.dport;
  const client = pkt.SRC;
  if (!pkt.v6) {
    const p = pkt.ip;
    emitIpv4(p, IPV4_MIN_LEN + 20, nextIpId(), true, DEFAULT_TTL, PROTO_TCP, load<u32>(from, 12), load<u32>(client, 12));
    const tcp = p + IPV4_MIN_LEN;
    emitTcp(tcp, dp, sp, seq, ack, outFlags);
    st16(tcp + TCP_CHECK, csum(tcp, 20, ipv4PseudoSum(p, PROTO_TCP, 20)));
    outIp = p; outLen = IPV4_MIN_LEN + 20;
  } else {
    const p = pkt.ip;
    // copy the client address out first: the new header overwrites the old one in place
    addrCopy(CLIENT, client);
    emitIpv6(p, 20, PROTO_TCP, DEFAULT_TTL, from, CLIENT);
    const tcp = p + IPV6_HLEN;
    emitTcp(tcp, dp, sp, seq, ack, outFlags);
    st16(tcp + TCP_CHECK, csum(tcp, 20, ipv6PseudoSum(p, PROTO_TCP, 20)));
    outIp = p; outLen = IPV6_HLEN + 20;
  }
  return true;
}

/** Turns an echo request into its reply in place (the VIP answers, as under IPVS). */
export function makeEchoReply(): bool {
  if (pkt.l4 == 0 || pkt.icmpType != (pkt.v6 ? ICMP6_ECHO : ICMP_ECHO)) return false;
  const p = pkt.ip;
  if (!pkt.v6) {
    const s = load<u32>(p, 12);
    store<u32>(p, load<u32>(p, 16), 12);
    store<u32>(p, s, 16);
    st8(p + 8, DEFAULT_TTL);
    st16(p + 10, 0);
    st16(p + 10, csum(p, (ld8(p) & 15) << 2, 0));
    st8(pkt.l4, ICMP_ECHO_REPLY);
    st16(pkt.l4 + ICMP_CHECK, 0);
    st16(pkt.l4 + ICMP_CHECK, csum(pkt.l4, pkt.l4Len, 0));
  } else {
    for (let i: usize = 0; i < 16; i += 8) {
      const s = load<u64>(p + 8 + i);
      store<u64>(p + 8 + i, load<u64>(p + 24 + i));
      store<u64>(p + 24 + i, s);
    }
    st8(p + 7, DEFAULT_TTL);
    st8(pkt.l4, ICMP6_ECHO_REPLY);
    st16(pkt.l4 + ICMP_CHECK, 0);
    st16(pkt.l4 + ICMP_CHECK, csum(pkt.l4, pkt.l4Len, ipv6PseudoSum(p, PROTO_ICMPV6, pkt.l4Len)));
  }
  outIp = p; outLen = pkt.ipLen;
  return true;
}
