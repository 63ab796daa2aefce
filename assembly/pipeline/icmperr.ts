// ICMP errors about a NATed flow (destination unreachable, fragmentation needed / packet too big,
// time exceeded, parameter problem): the quoted packet is translated back to what the receiver
// sent or saw, and the outer addresses follow, as the kernel's nf_nat_icmp_reply_translation does.
// That is what makes path MTU discovery work through a service VIP.
import { ld8, ld16, ld32, st16, st32, addrFromV4Be, addrCopy, addrEq } from "../mem";
import { csum, csumReplace16, csumReplace32 } from "../wire/checksum";
import { ipv6PseudoSum } from "../wire/ipv6";
import {
  PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, ICMP_CHECK, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED,
  ICMP_PARAM_PROBLEM, ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED, ICMP6_PARAM_PROBLEM,
  ICMP_ECHO, ICMP_ECHO_REPLY, ICMP6_ECHO, ICMP6_ECHO_REPLY,
} from "../wire/l4";
import { PROTO_SCTP } from "../wire/sctp";
import * as pkt from "./packet";
import * as ct from "../table/conntrack";
import { CtDir, CT_F_SRC, CT_F_DST, CT_R_SRC, CT_R_DST, CT_F_SPORT, CT_F_DPORT, CT_R_SPORT, CT_R_DPORT } from "../abi";

const ISRC: usize = memory.data(16, 16);
const IDST: usize = memory.data(16, 16);
const NEW_SRC: usize = memory.data(16, 16);
const NEW_DST: usize = memory.data(16, 16);

export function isIcmpError(): bool {
  if (pkt.l4 == 0) return false;
  const t = pkt.icmpType;
  if (pkt.proto == PROTO_ICMP) return t == ICMP_DEST_UNREACH || t == ICMP_TIME_EXCEEDED || t == ICMP_PARAM_PROBLEM;
  if (pkt.proto == PROTO_ICMPV6) return t == ICMP6_DEST_UNREACH || t == ICMP6_PACKET_TOO_BIG || t == ICMP6_TIME_EXCEEDED || t == ICMP6_PARAM_PROBLEM;
  return false;
}

/** What translateIcmpError found in the quoted packet. */
export const enum Quoted {
  /** Cut short, or not the IP version of the error: BadIcmpError. */
  Malformed = 0,
  /** Not a packet of a tracked flow: the error is routed unchanged. */
  Untracked = 1,
  /** A packet of flow `flowIdx`: the quote and the outer addresses are translated. */
  Translated = 2,
}

/** The record index of the flow the last Translated error was about. */
export let flowIdx: u32 = 0;

/** Translates the ICMP error in the current packet when it quotes a tracked flow. */
export function translateIcmpError(): Quoted {
  const q = pkt.l4 + 8;                           // the quoted packet
  const qlen = pkt.l4Len - 8;
  let qproto: u32 = 0, ql4: usize = 0, qhl: u32 = 0;
  if (!pkt.v6) {
    if (qlen < 20 || (ld8(q) >> 4) != 4) return Quoted.Malformed;
    qhl = (ld8(q) & 15) << 2;
    if (qhl < 20 || qhl + 8 > qlen) return Quoted.Malformed;
    qproto = ld8(q + 9);
    addrFromV4Be(ISRC, load<u32>(q, 12));
    addrFromV4Be(IDST, load<u32>(q, 16));
  } else {
    if (qlen < 48 || (ld8(q) >> 4) != 6) return Quoted.Malformed;
    qhl = 40;                                      // extension headers in quotes are not followed
    qproto = ld8(q + 6);
    addrCopy(ISRC, q + 8);
    addrCopy(IDST, q + 24);
  }
  ql4 = q + qhl;
  let qs: u32 = 0, qd: u32 = 0, qcsum: usize = 0;
  if (qproto == PROTO_SCTP) {
    // the ports as TCP's; the quoted CRC32c covers bytes the quote lacks: no receiver checks it
    qs = ld16(ql4); qd = ld16(ql4 + 2);
  } else if (qproto == PROTO_TCP || qproto == PROTO_UDP) {
    qs = ld16(ql4); qd = ld16(ql4 + 2);
    const off: u32 = qproto == PROTO_TCP ? 16 : 6;
    if (qhl + off + 2 <= qlen) qcsum = ql4 + off;
    if (qproto == PROTO_UDP && qcsum != 0 && !pkt.v6 && ld16(qcsum) == 0) qcsum = 0;
  } else if (qproto == PROTO_ICMP || qproto == PROTO_ICMPV6) {
    const t = ld8(ql4);
    if (t != ICMP_ECHO && t != ICMP_ECHO_REPLY && t != ICMP6_ECHO && t != ICMP6_ECHO_REPLY) return Quoted.Untracked;
    qs = ld16(ql4 + 4); qd = 0;
    qcsum = ql4 + 2;
  } else {
    return Quoted.Untracked;
  }
  // The quoted packet went the other way; its inverse is a tuple of the flow.
  const ref = ct.ctFind(IDST, ISRC, qd, qs, qproto);
  if (ref == 0) return Quoted.Untracked;
  const idx = ct.refIdx(ref), dir = ct.refDir(ref), r = ct.rec(idx);
  // Reply: the quoted packet was a forward packet after DNAT (client -> backend); undo to client -> VIP.
  // Original: the quoted packet was a reply after reverse NAT (VIP -> client); redo to backend -> client.
  let qSrcNew: usize, qDstNew: usize, qSportNew: u32, qDportNew: u32;
  if (dir == CtDir.Reply) { qSrcNew = r + CT_F_SRC; qDstNew = r + CT_F_DST; qSportNew = <u32>load<u16>(r + CT_F_SPORT); qDportNew = <u32>load<u16>(r + CT_F_DPORT); }
  else { qSrcNew = r + CT_R_SRC; qDstNew = r + CT_R_DST; qSportNew = <u32>load<u16>(r + CT_R_SPORT); qDportNew = <u32>load<u16>(r + CT_R_DPORT); }
  addrCopy(NEW_SRC, qSrcNew); addrCopy(NEW_DST, qDstNew);
  // quoted addresses and their checksums
  if (!pkt.v6) {
    rewriteQuoted4(q, 12, ld32(NEW_SRC + 12), qproto, qcsum);
    rewriteQuoted4(q, 16, ld32(NEW_DST + 12), qproto, qcsum);
    st16(q + 10, 0);
    st16(q + 10, csum(q, qhl, 0));
  } else {
    rewriteQuoted6(q + 8, NEW_SRC, qcsum);
    rewriteQuoted6(q + 24, NEW_DST, qcsum);
  }
  // quoted ports (ICMP echo: the identifier)
  if (qproto == PROTO_TCP || qproto == PROTO_UDP || qproto == PROTO_SCTP) {
    rewriteQuotedPort(ql4, qSportNew, qcsum);
    rewriteQuotedPort(ql4 + 2, qDportNew, qcsum);
  } else {
    rewriteQuotedPort(ql4 + 4, qSportNew, qcsum);
  }
  // Outer: the error goes to whoever sent the quoted packet (its new source); it comes from the
  // quoted destination when that host made it, else from a router on the path (left as it is).
  const fromQuotedDst = addrEq(pkt.SRC, IDST);
  pkt.setAddr(false, NEW_SRC);
  if (fromQuotedDst) pkt.setAddr(true, NEW_DST);
  // the ICMP checksum covers the whole message (and for ICMPv6 the pseudo-header): sum it anew
  st16(pkt.l4 + ICMP_CHECK, 0);
  st16(pkt.l4 + ICMP_CHECK, pkt.v6 ? csum(pkt.l4, pkt.l4Len, ipv6PseudoSum(pkt.ip, PROTO_ICMPV6, pkt.l4Len)) : csum(pkt.l4, pkt.l4Len, 0));
  flowIdx = idx;
  return Quoted.Translated;
}

function rewriteQuoted4(q: usize, off: u32, to: u32, qproto: u32, qcsum: usize): void {
  const from = ld32(q + off);
  if (from == to) return;
  st32(q + off, to);
  if (qcsum != 0 && qproto != PROTO_ICMP) st16(qcsum, csumReplace32(ld16(qcsum), from, to));
}

function rewriteQuoted6(field: usize, to: usize, qcsum: usize): void {
  for (let i: usize = 0; i < 16; i += 4) {
    const from = ld32(field + i), t = ld32(to + i);
    if (from != t) { st32(field + i, t); if (qcsum != 0) st16(qcsum, csumReplace32(ld16(qcsum), from, t)); }
  }
}

function rewriteQuotedPort(at: usize, to: u32, qcsum: usize): void {
  const from = ld16(at);
  if (from == to) return;
  st16(at, to);
  if (qcsum != 0) st16(qcsum, csumReplace16(ld16(qcsum), from, to));
}
