// The flow stage: conntrack lookup, a new flow for a packet to a service (backend, masquerade, a
// unique reply tuple), NAT by the flow's tuples, the TCP state machine, and the check of a flow
// against new tables after a reload. Layout of a flow record: abi.ts; the table: table/conntrack.ts.
import {
  Drop, Note, ServiceFlag, C_NEW_FLOWS, C_STALE_UDP_FLUSHED, C_FRAG_TRACKED, CFG_CLUSTER_CIDR4, CFG_CLUSTER_CIDR6,
  CT_F_SRC, CT_F_DST, CT_R_SRC, CT_R_DST, CT_F_SPORT, CT_F_DPORT, CT_R_SPORT, CT_R_DPORT, CT_PROTO, CT_STATE, CT_FLAGS,
  CT_SERVICE, CT_GEN, FlowFlag, CtDir, CtState, CtClass, Stage,
} from "../abi";
import { addrCopy, addrEq, addrInPrefix, addrIsV4, addrIsZero } from "../mem";
import * as st from "../state";
import * as pkt from "./packet";
import * as ct from "../table/conntrack";
import * as gen from "../table/generation";
import { hashTuple } from "../table/hash";
import { PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, TCP_SYN, TCP_ACKF, TCP_FIN, TCP_RST, ICMP_ECHO, ICMP6_ECHO } from "../wire/l4";
import { PROTO_SCTP } from "../wire/sctp";
import * as reply from "./reply";
import * as frag from "./frag";
import * as svcstats from "./svcstats";
import * as trace from "./trace";
import { chooseBackend } from "./backend";
import { answered, reject, masqFor } from "./finish";
import { out, drop } from "./result";
import { bindFlow } from "./offload";

/** The chosen backend's address, 16 bytes: the new flow's reply source. */
const BACKEND: usize = memory.data(16, 16);

/** What the conntrack stage did with a TCP, UDP or ICMP echo packet (Cilium's CT_NEW / CT_ESTABLISHED). */
export const enum Tracked {
  /** The verdict is set: answered (echo reply, RST, ICMP error) or dropped. */
  Final = 0,
  /** No flow and no service: the packet goes on as it came. */
  Unmatched = 1,
  /** A flow of its tuple exists (either direction): its NAT was applied. */
  Existing = 2,
  /** A service matched: a new flow was made and its NAT applied. */
  Created = 3,
  /** Offload mode: the flow's binding goes to the kernel; the packet goes back unchanged. */
  Offloaded = 4,
}

/** Finds the packet's flow, or on a miss its service, and rewrites the packet by the flow. */
export function trackedStage(g: usize, room: u32): Tracked {
  const now = st.nowSec;
  let ref = ct.ctFind(pkt.SRC, pkt.DST, pkt.sport, pkt.dport, pkt.proto);
  // Offload mode: a SYN on the tuple of an offloaded flow is a new connection reusing the client's
  // port (the kernel ended the old entry, in TIME_WAIT or closed): it is decided anew, by today's tables.
  if (ref != 0 && pkt.proto == PROTO_TCP && isSynOnly() && (load<u8>(ct.rec(ct.refIdx(ref)) + CT_FLAGS) & FlowFlag.OFFLOADED) != 0) {
    ct.ctDelete(ct.refIdx(ref));
    ref = 0;
  }
  if (ref != 0) {
    const idx = ct.refIdx(ref), dir = ct.refDir(ref);
    if (flowStillValid(g, idx, dir, now)) {
      out.note |= Note.CT_HIT;
      trace.step(Stage.Conntrack, 1, ref);
      // the kernel carries an offloaded flow: a packet of it here means the kernel's entry is gone
      if ((load<u8>(ct.rec(idx) + CT_FLAGS) & FlowFlag.OFFLOADED) != 0) return offload(idx, true);
      applyFlow(idx, dir, now);
      return Tracked.Existing;
    }
  }
  trace.step(Stage.Conntrack, 0, 0);
  return newFlow(g, room, now);
}

/** No flow holds the packet's tuple: an echo to a VIP is answered, a packet to a service gets a
 *  backend and a new flow, anything else goes on. */
function newFlow(g: usize, room: u32, now: u32): Tracked {
  // A new connection whose reply would look like the reply of an older NATed flow (the client reused
  // its port to talk to the backend itself): the backend cannot hold both 4-tuples, so the old flow
  // is over; without this, the new connection's SYN/ACK would be reverse-NATed to the old VIP.
  if (pkt.proto == PROTO_TCP && isSynOnly()) {
    const old = ct.ctFind(pkt.DST, pkt.SRC, pkt.dport, pkt.sport, pkt.proto);
    if (old != 0 && ct.refDir(old) == CtDir.Reply) ct.ctDelete(ct.refIdx(old));
  }
  // ICMP echo to a service VIP: answered by the VIP, as IPVS does.
  if (pkt.proto == PROTO_ICMP || pkt.proto == PROTO_ICMPV6) {
    if (pkt.icmpType == (pkt.v6 ? ICMP6_ECHO : ICMP_ECHO) && !addrIsZero(pkt.DST) && gen.svcFind(g, pkt.DST, 0, 0) != 0) {
      if (reply.makeEchoReply()) { answered(Drop.None, g); return Tracked.Final; }
    }
    return Tracked.Unmatched;
  }
  // The unspecified addresses key the "any local address" entries; a packet sent to one matches none of them.
  const anyKey = pkt.v6 ? st.ANY_ADDR : st.ANY_ADDR4;
  if (addrEq(pkt.DST, anyKey)) return Tracked.Unmatched;
  let e = gen.svcFind(g, pkt.DST, pkt.dport, pkt.proto);
  let anyAddr = false;
  if (e == 0 && gen.localHas(g, pkt.DST)) {
    e = gen.svcFind(g, anyKey, pkt.dport, pkt.proto);
    anyAddr = e != 0;
  }
  if (e == 0) return Tracked.Unmatched;
  const service = load<u32>(e + gen.S_ID) + 1;
  out.service = service;
  trace.step(Stage.Service, service, load<u32>(e + gen.S_ELIGIBLE));
  // loadBalancerSourceRanges: kube-proxy's firewall drops a new connection from elsewhere, before
  // any endpoint is looked at (no reject either); a flow already tracked is not checked again.
  if (!gen.svcSourceAllowed(g, e, pkt.SRC)) { drop(Drop.SourceNotAllowed); return Tracked.Final; }
  const eligible = load<u32>(e + gen.S_ELIGIBLE);
  if (eligible == 0) {
    if (load<u8>(e + gen.S_FLAGS) & ServiceFlag.DROP_WHEN_EMPTY) drop(Drop.NoLocalBackend);
    else reject(Drop.NoBackend, room, g);
    return Tracked.Final;
  }
  // A TCP segment that is not a SYN, for a flow we never saw (a restart, an eviction): take it up
  // mid-stream as the kernel does with nf_conntrack_tcp_loose; Maglev keeps the same backend.
  const bi = chooseBackend(g, e, eligible, now);
  const b = gen.svcBackend(g, e, bi);
  if (addrIsV4(b + gen.B_ADDR) == pkt.v6) { reject(Drop.NoBackend, room, g); return Tracked.Final; }
  addrCopy(BACKEND, b + gen.B_ADDR);
  const bport = <u32>load<u16>(b + gen.B_PORT);
  trace.step(Stage.Backend, bi, load<u8>(e + gen.S_SELECT));
  // Masquerade where kube-proxy does: hairpin (a pod reaching itself) and, when asked, traffic
  // from outside the cluster; the reply must come back through the core to be reversed.
  const sflags = load<u8>(e + gen.S_FLAGS);
  const snat = addrEq(pkt.SRC, BACKEND) || ((sflags & ServiceFlag.MASQUERADE_EXTERNAL) != 0 && !fromCluster());
  const rDst = snat ? masqFor() : pkt.SRC;
  let rDport = pkt.sport;
  // The reply tuple must be unique. A stale flow holding it (expired, closed) gives way; a live one
  // stays, and ours takes another source port, as the kernel's nf_nat does (the same client port
  // towards two VIPs that share a backend).
  let clash = ct.ctFind(BACKEND, rDst, bport, rDport, pkt.proto);
  if (clash != 0 && !flowLive(ct.refIdx(clash), now)) { ct.ctDelete(ct.refIdx(clash)); clash = 0; }
  let portNat = false;
  if (clash != 0) {
    portNat = true;
    for (let t: u32 = 1; t <= 16 && clash != 0; t++) {
      rDport = 32768 + ((hashTuple(pkt.SRC, pkt.DST, <u64>pkt.sport) + t * 7919) % 28232);
      clash = ct.ctFind(BACKEND, rDst, bport, rDport, pkt.proto);
    }
    if (clash != 0) { drop(Drop.NatPortExhausted); return Tracked.Final; }
  }
  const cls = pkt.proto == PROTO_TCP ? (isSynOnly() ? CtClass.TcpSyn : CtClass.TcpEstablished) : CtClass.Udp;
  const state = pkt.proto == PROTO_TCP ? (isSynOnly() ? CtState.SynSent : CtState.Established) : CtState.UdpUnreplied;
  let fl: u8 = FlowFlag.DNAT | (snat || portNat ? FlowFlag.SNAT : 0) | (anyAddr ? FlowFlag.ANY_ADDR_SERVICE : 0);
  const idx = ct.ctCreate(pkt.SRC, pkt.DST, pkt.sport, pkt.dport, BACKEND, rDst, bport, rDport,
    pkt.proto, state, st.offload ? CtClass.Offloaded : cls, fl, service, gen.generationNumber(), now);
  if (idx < 0) { drop(Drop.NatPortExhausted); return Tracked.Final; }
  st.count(C_NEW_FLOWS);
  svcstats.newFlow(service);
  out.note |= Note.NEW_FLOW;
  if (st.offload) return offload(<u32>idx, false);
  applyFlow(<u32>idx, CtDir.Original, now);
  return Tracked.Created;
}

/** Offload mode: the flow's binding is queued for the kernel; the packet goes back as it came. */
function offload(idx: u32, resent: bool): Tracked {
  out.service = load<u32>(ct.rec(idx) + CT_SERVICE);
  if (!bindFlow(idx, out.slot, resent)) { drop(Drop.OffloadFailed); return Tracked.Final; }
  svcstats.packet(out.service, pkt.ipLen);   // the kernel counts the rest (wasp status: offload)
  return Tracked.Offloaded;
}

/** Is flow idx still in use: not past its timeout, and for TCP not closed or in TIME_WAIT? */
function flowLive(idx: u32, now: u32): bool {
  if (ct.ctExpired(idx, now)) return false;
  const r = ct.rec(idx);
  if (<u32>load<u8>(r + CT_PROTO) != PROTO_TCP) return true;
  const s = <CtState>load<u8>(r + CT_STATE);
  return s != CtState.TimeWait && s != CtState.Close;
}

@inline function isSynOnly(): bool { return (pkt.tcpFlags & (TCP_SYN | TCP_ACKF)) == TCP_SYN; }

/** After a reload, a flow is checked once against the new tables: a UDP flow whose backend is gone
 *  is removed (kube-proxy clears such conntrack entries), a TCP flow goes on until it ends.
 *  Also reaps an expired flow, and ends a TIME_WAIT/CLOSE flow when its client port is reused. */
function flowStillValid(g: usize, idx: u32, dir: CtDir, now: u32): bool {
  const r = ct.rec(idx);
  if (ct.ctExpired(idx, now)) { ct.ctDelete(idx); return false; }
  const proto = <u32>load<u8>(r + CT_PROTO);
  if (proto == PROTO_TCP && dir == CtDir.Original && isSynOnly()) {
    const s = <CtState>load<u8>(r + CT_STATE);
    if (s == CtState.TimeWait || s == CtState.Close) { ct.ctDelete(idx); return false; }
  }
  return !revalidate(g, idx);
}

/** Checks a flow once per generation against the current tables; true when it was removed:
 *  a UDP flow whose service or backend (ready or terminating) is gone, as kube-proxy clears such
 *  conntrack entries. Used by the packet path and by the sweep after a reload. */
export function revalidate(g: usize, idx: u32): bool {
  const r = ct.rec(idx);
  const gnow = gen.generationNumber();
  if (load<u32>(r + CT_GEN) == gnow) return false;
  store<u32>(r + CT_GEN, gnow);
  const proto = <u32>load<u8>(r + CT_PROTO);
  if (proto != PROTO_UDP) return false;
  const any = (load<u8>(r + CT_FLAGS) & FlowFlag.ANY_ADDR_SERVICE) != 0;
  const anyKey = addrIsV4(r + CT_F_DST) ? st.ANY_ADDR4 : st.ANY_ADDR;
  const e = gen.svcFind(g, any ? anyKey : r + CT_F_DST, <u32>load<u16>(r + CT_F_DPORT), proto);
  if (e != 0) {
    const n = load<u32>(e + gen.S_COUNT), bport = load<u16>(r + CT_R_SPORT);
    for (let i: u32 = 0; i < n; i++) {
      const b = gen.svcBackend(g, e, i);
      if (load<u16>(b + gen.B_PORT) == bport && addrEq(b + gen.B_ADDR, r + CT_R_SRC)) return false;
    }
  }
  ct.ctDelete(idx);
  st.count(C_STALE_UDP_FLUSHED);
  return true;
}

/** Sets the packet's source (isSrc) or destination address and port from a flow record's fields. */
@inline function rewrite(isSrc: bool, addrAt: usize, portAt: usize): void {
  pkt.setAddr(isSrc, addrAt);
  pkt.setPort(isSrc, <u32>load<u16>(portAt));
}

/** Rewrites the packet by the flow's tuples and moves its state machine. */
function applyFlow(idx: u32, dir: CtDir, now: u32): void {
  const r = ct.rec(idx);
  const service = load<u32>(r + CT_SERVICE);
  out.service = service;
  // keyed by the addresses as they arrived: the later fragments still carry them
  if (pkt.isFrag && pkt.fragFirst) { frag.remember(idx, dir); st.count(C_FRAG_TRACKED); }
  const snat = (load<u8>(r + CT_FLAGS) & FlowFlag.SNAT) != 0;
  if (dir == CtDir.Original) {
    // forward: to the reply tuple's source (the backend), from its destination (client or masq)
    rewrite(false, r + CT_R_SRC, r + CT_R_SPORT);
    if (snat) { rewrite(true, r + CT_R_DST, r + CT_R_DPORT); out.note |= Note.SNAT; }
    out.note |= Note.DNAT;
  } else {
    // back: from the forward tuple's destination (the VIP), to its source (the client)
    rewrite(true, r + CT_F_DST, r + CT_F_DPORT);
    if (snat) rewrite(false, r + CT_F_SRC, r + CT_F_SPORT);
    out.note |= Note.REVERSE_NAT;
    store<u8>(r + CT_FLAGS, load<u8>(r + CT_FLAGS) | FlowFlag.REPLIED);
  }
  svcstats.packet(service, pkt.ipLen);
  trace.step(Stage.Nat, <u32>dir, idx);
  ct.ctTouch(idx, nextClass(r, dir), now);
}

/** Both FIN flags: a FIN came from each side. */
const FINS: u8 = FlowFlag.FIN_ORIG | FlowFlag.FIN_REPLY;

/** The kernel-like TCP state machine (simplified), and UDP's replied/unreplied timeouts. SCTP is
 *  tracked as UDP is (30 s until a reply, 120 s after): an association's heartbeats (every 30 s
 *  by default, RFC 9260 §8.3) keep an idle one alive. */
function nextClass(r: usize, dir: CtDir): CtClass {
  const proto = <u32>load<u8>(r + CT_PROTO);
  if (proto == PROTO_UDP || proto == PROTO_SCTP) {
    if (dir == CtDir.Reply) store<u8>(r + CT_STATE, <u8>CtState.UdpReplied);
    return <CtState>load<u8>(r + CT_STATE) == CtState.UdpReplied ? CtClass.UdpStream : CtClass.Udp;
  }
  if (proto != PROTO_TCP) return CtClass.Icmp;
  const f = pkt.tcpFlags;
  let s = <CtState>load<u8>(r + CT_STATE);
  // which sides have sent a FIN: both, then an ACK, and the connection is over
  const finBit: u8 = dir == CtDir.Original ? FlowFlag.FIN_ORIG : FlowFlag.FIN_REPLY;
  let fins = load<u8>(r + CT_FLAGS) & FINS;
  if ((f & TCP_RST) != 0) s = CtState.Close;
  else if (s == CtState.SynSent) { if (dir == CtDir.Reply && (f & TCP_SYN) != 0 && (f & TCP_ACKF) != 0) s = CtState.SynRecv; }
  else if (s == CtState.SynRecv) { if (dir == CtDir.Original && (f & TCP_ACKF) != 0 && (f & TCP_SYN) == 0) s = CtState.Established; }
  else if (s == CtState.Established) { if ((f & TCP_FIN) != 0) { s = CtState.FinWait; fins |= finBit; } }
  else if (s == CtState.FinWait) {
    if ((f & TCP_FIN) != 0) fins |= finBit;
    else if (fins == FINS && (f & TCP_ACKF) != 0) s = CtState.TimeWait;
  }
  store<u8>(r + CT_STATE, <u8>s);
  store<u8>(r + CT_FLAGS, (load<u8>(r + CT_FLAGS) & ~FINS) | fins);
  if (s == CtState.Established) return CtClass.TcpEstablished;
  if (s == CtState.FinWait) return CtClass.TcpClosing;
  if (s == CtState.TimeWait) return CtClass.TcpTimeWait;
  if (s == CtState.Close) return CtClass.TcpClose;
  return CtClass.TcpSyn;
}

/** Is the packet's source inside the cluster CIDR of its family? */
function fromCluster(): bool {
  const c = st.CONFIG + (pkt.v6 ? CFG_CLUSTER_CIDR6 : CFG_CLUSTER_CIDR4);
  const len = load<u32>(c + 16);
  return len != 0 && addrInPrefix(pkt.SRC, c, len);
}
