// The per-packet pipeline, in packet order:
//   link (TAP: ARP, Ethernet) → decap (overlay) → classify → ICMP error translation → conntrack →
//   on a miss: service lookup, backend choice, new flow → NAT → TTL → route → encap → verdict.
// Every slot gets exactly one verdict; nothing here allocates or traps on any input.
import {
  Verdict, Drop, Note, SlotFlag, SLOT_SIZE, SLOT_DATA, SLOT_LEN, SLOT_FLAGS, SLOT_VERDICT, SLOT_REASON, SLOT_PEER,
  SLOT_BUF_START, SLOT_BUF_END, SLOT_SERVICE, SLOT_NOTE, VNET_HDR_LEN, C_DROP_BASE, C_BYTES_IN, C_PACKETS_IN,
  C_NEW_FLOWS, C_STALE_UDP_FLUSHED, C_REPLIES_MADE, C_ICMP_TRANSLATED, C_FRAG_TRACKED, C_BATCHES, Select,
  C_INNER_CSUM_COMPLETED, C_TUNNEL_GSO_SENT, C_TUNNEL_GSO_RECEIVED,
  ServiceFlag, RouteKind, CFG_MASQ_ADDR4, CFG_MASQ_ADDR6, CFG_CLUSTER_CIDR4, CFG_CLUSTER_CIDR6, CFG_SERVICE_CIDR4,
  CFG_SERVICE_CIDR6, CFG_ENGINE_MAC, CFG_TAP_PEER_MAC, CT_F_SRC, CT_F_DST, CT_R_SRC, CT_R_DST, CT_F_SPORT, CT_F_DPORT,
  CT_R_SPORT, CT_R_DPORT, CT_PROTO, CT_STATE, CT_FLAGS, CT_SERVICE, CT_GEN, FlowFlag, CtDir, CtState, CtClass, Stage,
} from "../abi";
import { addrCopy, addrEq, addrInPrefix, addrIsV4, addrIsZero, ld8, ld16, ld32, st16 } from "../mem";
import * as st from "../state";
import * as pkt from "./packet";
import * as ct from "../table/conntrack";
import * as gen from "../table/generation";
import { hashTuple } from "../table/hash";
import { PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, TCP_SYN, TCP_ACKF, TCP_FIN, TCP_RST, ICMP_ECHO, ICMP6_ECHO } from "../wire/l4";
import { ipv4DecTtl } from "../wire/ipv4";
import { checkArp, emitArpReply, ARP_REQUEST, Arp } from "../wire/arp";
import { ETH_HLEN, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, emitEthernet } from "../wire/ethernet";
import { VXLAN_HLEN } from "../wire/vxlan";
import * as reply from "./reply";
import * as icmperr from "./icmperr";
import * as overlay from "./overlay";
import * as frag from "./frag";
import * as svcstats from "./svcstats";
import * as trace from "./trace";
import * as segment from "./segment";
import * as affinity from "./affinity";
import * as ratelimit from "./ratelimit";

const MASQ: usize = memory.data(16, 16);
const BACKEND: usize = memory.data(16, 16);

// per-slot results
let verdict: u32 = 0;
let reason: u32 = 0;
let note: u32 = 0;
let service: u32 = 0;
let outIp: usize = 0;
let outLen: u32 = 0;
let peerOut: u32 = 0;

/** Runs `count` slots; returns the number not dropped. */
export function processBatch(count: u32, now: u32): u32 {
  st.setNow(now);
  segment.segmentReset();
  if (count > st.maxBatch) count = st.maxBatch;
  let kept: u32 = 0;
  const g = gen.activeGen();
  for (let i: u32 = 0; i < count; i++) {
    const s = st.slots + <usize>i * SLOT_SIZE;
    const firstExtra = segment.extraCount();
    processSlot(s, g);
    store<u8>(s + SLOT_VERDICT, <u8>verdict);
    store<u8>(s + SLOT_REASON, <u8>reason);
    store<u32>(s + SLOT_SERVICE, service);
    store<u32>(s + SLOT_NOTE, note);
    st.count(verdict);
    if (reason != Drop.None) st.count(C_DROP_BASE + reason);
    if (verdict == Verdict.Drop) continue;
    kept++;
    store<u32>(s + SLOT_DATA, <u32>outIp);
    store<u32>(s + SLOT_LEN, outLen);
    if (verdict == Verdict.Overlay) {
      store<u32>(s + SLOT_PEER, peerOut);
      segment.appendOverlayOut(s, firstExtra);
    }
  }
  st.count(C_BATCHES);
  return kept;
}

@inline function drop(r: Drop): void { verdict = Verdict.Drop; reason = r; }

function processSlot(s: usize, g: usize): void {
  verdict = Verdict.Drop; reason = Drop.None; note = 0; service = 0; peerOut = 0;
  const flags = <u32>load<u16>(s + SLOT_FLAGS);
  let data = <usize>load<u32>(s + SLOT_DATA);
  let len = load<u32>(s + SLOT_LEN);
  const bufStart = <usize>load<u32>(s + SLOT_BUF_START), bufEnd = <usize>load<u32>(s + SLOT_BUF_END);
  const hasVnet = (flags & SlotFlag.VNET) != 0;
  const lead: usize = hasVnet ? <usize>VNET_HDR_LEN : 0;
  // The host's slot must lie inside the packet buffer area: the core never writes elsewhere.
  if (bufStart < st.bufArea || bufEnd > st.bufAreaEnd || bufStart > bufEnd || data < bufStart + lead ||
      <u64>data + <u64>len > <u64>bufEnd) { drop(Drop.BadSlot); return; }
  st.count(C_PACKETS_IN);
  st.count(C_BYTES_IN, <u64>len);
  trace.begin((flags & SlotFlag.TRACE) != 0, s);
  let vnetHdr: usize = hasVnet ? data - VNET_HDR_LEN : 0;
  lowestStart = bufStart + lead;
  let fromOverlay = (flags & SlotFlag.FROM_OVERLAY) != 0;
  const peer = load<u32>(s + SLOT_PEER);

  if (fromOverlay) {
    const d = overlay.checkDecap(g, data, len, peer);
    if (d != Drop.None) { drop(d); trace.step(Stage.Decap, d, peer); return; }
    data += VXLAN_HLEN + ETH_HLEN; len -= VXLAN_HLEN + ETH_HLEN;
    note |= Note.DECAP;
    // a peer's TSO packet that came whole goes on whole, as a GSO packet (never in TAP mode:
    // there the vnet header would have to precede an Ethernet header the core adds later)
    if (st.decapGso && !st.modeTap) vnetHdr = overlay.wholeTsoHeader(data, len);
    trace.step(Stage.Decap, 0, peer);
  } else if ((flags & SlotFlag.ETHERNET) != 0) {
    if (len < ETH_HLEN) { drop(Drop.BadEthernet); return; }
    const et = ld16(data + 12);
    if (et == ETH_P_ARP) { answerArp(data, len); return; }
    if (et != ETH_P_IPV4 && et != ETH_P_IPV6) { drop(Drop.BadEthernet); return; }
    data += ETH_HLEN; len -= ETH_HLEN;
  }

  const d = pkt.classify(data, len, vnetHdr);
  trace.step(Stage.Parse, d, pkt.proto);
  if (d != Drop.None) { drop(d); return; }
  if (pkt.gso) {
    note |= Note.GSO;
    if (pkt.proto != PROTO_TCP) { drop(Drop.GsoUnsupported); return; }
  }
  // RFC 1812 §5.3.7: never forward from a loopback or multicast source.
  if (isMartianSource()) { drop(Drop.Martian); return; }
  if (fromOverlay) {
    // No spoofing through the tunnel: the inner source must be a pod of the node that sent it.
    const r = gen.routeLookup(g, pkt.SRC);
    if (r == 0 || load<u8>(r + gen.R_KIND) != <u8>RouteKind.Remote || load<u32>(r + gen.R_UNDERLAY) != peer) {
      drop(Drop.SpoofedInnerSource); return;
    }
    if (vnetHdr != 0) st.count(C_TUNNEL_GSO_RECEIVED);
    else if (pkt.completeOffloadedChecksum()) st.count(C_INNER_CSUM_COMPLETED);
  }
  // free bytes before the IP header (after the vnet header slot); in TAP mode an answer built there
  // still needs an Ethernet header in front of it
  let room = <u32>(pkt.ip - bufStart - lead);
  if (st.modeTap) room = room > ETH_HLEN ? room - ETH_HLEN : 0;

  // TTL first: an expiring packet is answered as it arrived (RFC 1812 §5.3.1).
  if (pkt.ttl() <= 1) {
    if (reply.mayAnswerWithError() && reply.makeTimeExceeded(room, masqFor())) {
      answered(Drop.TtlExceeded, g, fromOverlay);
    } else drop(Drop.TtlExceeded);
    return;
  }

  let natted = false;
  if (icmperr.isIcmpError()) {
    const t = icmperr.translateIcmpError();
    if (t < 0) { drop(Drop.BadIcmpError); return; }
    if (t > 0) {
      natted = true; note |= Note.ICMP_ERROR_TRANSLATED; st.count(C_ICMP_TRANSLATED);
      service = load<u32>(ct.rec(<u32>icmperr.flowIdx) + CT_SERVICE);
    }
  } else if (pkt.tracked) {
    const r = trackedStage(g, room, fromOverlay);
    if (r < 0) return;           // verdict already set (answered or dropped)
    natted = r > 0;
  } else if (pkt.isFrag && !pkt.fragFirst) {
    const r = frag.lookup(g);
    if (r < 0) { drop(Drop.FragmentUntracked); return; }
    if (r > 0) { natted = true; note |= Note.FRAGMENT; }
  }
  if (!natted && inServiceCidr()) {
    // A service address with no service on this port: reject, never route it back to the TUN (a loop).
    reject(Drop.NoService, room, g, fromOverlay);
    return;
  }
  route(g, room, natted, fromOverlay);
}

// RFC 1812 §5.3.7: network 0, loopback, multicast (class D), class E and limited broadcast sources
// are never forwarded; RFC 4291: nor the unspecified, loopback or a multicast IPv6 source. A packet
// to the limited broadcast (a DHCP discover from 0.0.0.0) is the host's, as in the kernel.
@inline function isMartianSource(): bool {
  if (!pkt.v6) {
    const s = ld32(pkt.SRC + 12), hi = s >>> 24;
    if (ld32(pkt.DST + 12) == 0xffffffff) return false;
    return hi == 0 || hi == 127 || hi >= 224;
  }
  return ld8(pkt.SRC) == 0xff || (load<u64>(pkt.SRC) == 0 && (load<u64>(pkt.SRC, 8) == 0x0100000000000000 || load<u64>(pkt.SRC, 8) == 0));
}

@inline function masqFor(): usize { return st.CONFIG + (pkt.v6 ? CFG_MASQ_ADDR6 : CFG_MASQ_ADDR4); }

function inServiceCidr(): bool {
  const c = st.CONFIG + (pkt.v6 ? CFG_SERVICE_CIDR6 : CFG_SERVICE_CIDR4);
  const len = load<u32>(c + 16);
  return len != 0 && addrInPrefix(pkt.DST, c, len);
}

function fromCluster(): bool {
  const c = st.CONFIG + (pkt.v6 ? CFG_CLUSTER_CIDR6 : CFG_CLUSTER_CIDR4);
  const len = load<u32>(c + 16);
  return len != 0 && addrInPrefix(pkt.SRC, c, len);
}

/** The core answered the packet itself (reply in reply.outIp/outLen): send it back where it came from. */
function answered(why: Drop, g: usize, fromOverlay: bool): void {
  reason = why;
  note |= Note.REPLY_MADE;
  st.count(C_REPLIES_MADE);
  const hadVnet = pkt.vnet != 0;
  outIp = reply.outIp; outLen = reply.outLen;
  // the answer's destination is the sender; route it like any packet (a remote sender: overlay)
  pkt.classify(outIp, outLen, 0);
  const r = gen.routeLookup(g, pkt.DST);
  if (r != 0 && load<u8>(r + gen.R_KIND) == <u8>RouteKind.Remote) {
    toOverlay(r, <u32>(outIp - lowestStart), g);
    return;
  }
  toTun();
  if (hadVnet && verdict != Verdict.Drop) memory.fill(outIp - VNET_HDR_LEN, 0, VNET_HDR_LEN);
}

let lowestStart: usize = 0;

function reject(why: Drop, room: u32, g: usize, fromOverlay: bool): void {
  if (!reply.mayAnswerWithError()) { drop(why); return; }
  let ok = false;
  if (pkt.proto == PROTO_TCP) ok = reply.makeRst(pkt.DST);
  else ok = reply.makePortUnreachable(room, pkt.DST);
  if (ok) answered(why, g, fromOverlay); else drop(why);
}

/** A reply the core built has no offloads pending: zero the virtio_net_hdr before its output
 *  start (after any Ethernet header added in TAP mode: the host reads it at data - VNET_HDR_LEN). */
function clearVnet(outStart: usize): void {
  if (pkt.vnet == 0) return;
  memory.fill(outStart - VNET_HDR_LEN, 0, VNET_HDR_LEN);
}

// ── conntrack and services ──────────────────────────────────────────────────────────────

/** Returns -1 when the verdict is final, 0 when the packet goes on un-NATed, 1 when NATed. */
function trackedStage(g: usize, room: u32, fromOverlay: bool): i32 {
  const now = st.nowSec;
  let ref = ct.ctFind(pkt.SRC, pkt.DST, pkt.sport, pkt.dport, pkt.proto);
  if (ref != 0) {
    const idx = ct.refIdx(ref), dir = ct.refDir(ref);
    if (!flowStillValid(g, idx, dir, now)) ref = 0;
    else {
      note |= Note.CT_HIT;
      trace.step(Stage.Conntrack, 1, ref);
      applyFlow(idx, dir, now);
      return 1;
    }
  }
  trace.step(Stage.Conntrack, 0, 0);
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
      if (reply.makeEchoReply()) { answered(Drop.None, g, fromOverlay); return -1; }
    }
    return 0;
  }
  // The unspecified addresses key the "any local address" entries; a packet sent to one matches none of them.
  const anyKey = pkt.v6 ? st.ANY_ADDR : st.ANY_ADDR4;
  if (addrEq(pkt.DST, anyKey)) return 0;
  let e = gen.svcFind(g, pkt.DST, pkt.dport, pkt.proto);
  let anyAddr = false;
  if (e == 0 && gen.localHas(g, pkt.DST)) {
    e = gen.svcFind(g, anyKey, pkt.dport, pkt.proto);
    anyAddr = e != 0;
  }
  if (e == 0) return 0;
  service = load<u32>(e + gen.S_ID) + 1;
  trace.step(Stage.Service, service, load<u32>(e + gen.S_ELIGIBLE));
  const eligible = load<u32>(e + gen.S_ELIGIBLE);
  if (eligible == 0) {
    if (load<u8>(e + gen.S_FLAGS) & ServiceFlag.DROP_WHEN_EMPTY) drop(Drop.NoLocalBackend);
    else reject(Drop.NoBackend, room, g, fromOverlay);
    return -1;
  }
  // A TCP segment that is not a SYN, for a flow we never saw (a restart, an eviction): take it up
  // mid-stream as the kernel does with nf_conntrack_tcp_loose; Maglev keeps the same backend.
  const bi = chooseBackend(g, e, eligible, now);
  const b = gen.svcBackend(g, e, bi);
  if (addrIsV4(b + gen.B_ADDR) == pkt.v6) { reject(Drop.NoBackend, room, g, fromOverlay); return -1; }
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
    if (clash != 0) { drop(Drop.NatPortExhausted); return -1; }
  }
  const cls = pkt.proto == PROTO_TCP ? (isSynOnly() ? CtClass.TcpSyn : CtClass.TcpEstablished) : CtClass.Udp;
  const state = pkt.proto == PROTO_TCP ? (isSynOnly() ? CtState.SynSent : CtState.Established) : CtState.UdpUnreplied;
  let fl: u8 = FlowFlag.DNAT | (snat || portNat ? FlowFlag.SNAT : 0) | (anyAddr ? FlowFlag.ANY_ADDR_SERVICE : 0);
  const idx = ct.ctCreate(pkt.SRC, pkt.DST, pkt.sport, pkt.dport, BACKEND, rDst, bport, rDport,
    pkt.proto, state, cls, fl, service, gen.generationNumber(), now);
  if (idx < 0) { drop(Drop.NatPortExhausted); return -1; }
  st.count(C_NEW_FLOWS);
  svcstats.newFlow(service);
  note |= Note.NEW_FLOW;
  applyFlow(<u32>idx, CtDir.Original, now);
  return 1;
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

function chooseBackend(g: usize, e: usize, eligible: u32, now: u32): u32 {
  if ((load<u8>(e + gen.S_FLAGS) & ServiceFlag.AFFINITY) != 0) {
    const a = affinity.lookup(load<u32>(e + gen.S_ID), pkt.SRC, now, load<u32>(e + gen.S_AFFINITY));
    if (a >= 0) {
      // the client's backend where it was, else wherever a reload moved it
      const want = affinity.rememberedIdent();
      let found: i32 = -1;
      if (<u32>a < eligible && identOf(g, e, <u32>a) == want) found = a;
      else for (let i: u32 = 0; i < eligible; i++) if (identOf(g, e, i) == want) { found = <i32>i; break; }
      if (found >= 0) { note |= Note.AFFINITY; affinity.touch(now, <u32>found); return <u32>found; }
    }
    const bi = pick(g, e, eligible);
    affinity.remember(load<u32>(e + gen.S_ID), pkt.SRC, bi, identOf(g, e, bi), now);
    return bi;
  }
  return pick(g, e, eligible);
}

@inline function identOf(g: usize, e: usize, i: u32): u32 {
  const b = gen.svcBackend(g, e, i);
  return affinity.backendIdent(b + gen.B_ADDR, <u32>load<u16>(b + gen.B_PORT));
}

@inline function pick(g: usize, e: usize, eligible: u32): u32 {
  if (load<u8>(e + gen.S_SELECT) == <u8>Select.Maglev && load<u32>(e + gen.S_MAGLEV) != 0) {
    const h = hashTuple(pkt.SRC, pkt.DST, (<u64>pkt.sport << 32) | (<u64>pkt.dport << 16) | <u64>pkt.proto);
    const i = gen.svcMaglevPick(g, e, h);
    return i < eligible ? i : 0;
  }
  return st.random32() % eligible;
}


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

/** Rewrites the packet by the flow's tuples and moves its state machine. */
function applyFlow(idx: u32, dir: CtDir, now: u32): void {
  const r = ct.rec(idx);
  service = load<u32>(r + CT_SERVICE);
  // keyed by the addresses as they arrived: the later fragments still carry them
  if (pkt.isFrag && pkt.fragFirst) { frag.remember(idx, dir); st.count(C_FRAG_TRACKED); }
  if (dir == CtDir.Original) {
    // forward: to the reply tuple's source (the backend), from its destination (client or masq)
    pkt.setAddr(false, r + CT_R_SRC);
    pkt.setPort(false, <u32>load<u16>(r + CT_R_SPORT));
    if ((load<u8>(r + CT_FLAGS) & FlowFlag.SNAT) != 0) {
      pkt.setAddr(true, r + CT_R_DST);
      pkt.setPort(true, <u32>load<u16>(r + CT_R_DPORT));
      note |= Note.SNAT;
    }
    note |= Note.DNAT;
  } else {
    pkt.setAddr(true, r + CT_F_DST);
    pkt.setPort(true, <u32>load<u16>(r + CT_F_DPORT));
    if ((load<u8>(r + CT_FLAGS) & FlowFlag.SNAT) != 0) {
      pkt.setAddr(false, r + CT_F_SRC);
      pkt.setPort(false, <u32>load<u16>(r + CT_F_SPORT));
    }
    note |= Note.REVERSE_NAT;
    store<u8>(r + CT_FLAGS, load<u8>(r + CT_FLAGS) | FlowFlag.REPLIED);
  }
  svcstats.packet(service, pkt.ipLen);
  trace.step(Stage.Nat, <u32>dir, idx);
  ct.ctTouch(idx, nextClass(r, dir), now);
}

/** Both FIN flags: a FIN came from each side. */
const FINS: u8 = FlowFlag.FIN_ORIG | FlowFlag.FIN_REPLY;

/** The kernel-like TCP state machine (simplified), and UDP's replied/unreplied timeouts. */
function nextClass(r: usize, dir: CtDir): CtClass {
  const proto = <u32>load<u8>(r + CT_PROTO);
  if (proto == PROTO_UDP) {
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

// ── routing and output ──────────────────────────────────────────────────────────────────

function route(g: usize, room: u32, natted: bool, fromOverlay: bool): void {
  const r = gen.routeLookup(g, pkt.DST);
  trace.step(Stage.Route, r == 0 ? 0xff : load<u8>(r + gen.R_KIND), r == 0 ? 0 : load<u32>(r + gen.R_UNDERLAY));
  if (r != 0 && load<u8>(r + gen.R_KIND) == <u8>RouteKind.Remote) {
    // never carry a packet from one node to another: no transit through this node
    if (fromOverlay) { drop(Drop.NoRoute); return; }
    decTtl();
    toOverlay(r, room, g);
    return;
  }
  if (r == 0 && !natted) {
    // Not ours: the host routes it. In TUN mode this still goes back through the device.
    outIp = pkt.ip; outLen = pkt.ipLen;
    verdict = Verdict.Host;
    if (st.modeTap) addEthernet();
    return;
  }
  decTtl();
  toTun();
}

@inline function decTtl(): void {
  if (!pkt.v6) ipv4DecTtl(pkt.ip);
  else store<u8>(pkt.ip + 7, load<u8>(pkt.ip + 7) - 1);
  note |= Note.TTL_DECREMENTED;
}

function toTun(): void {
  outIp = pkt.ip; outLen = pkt.ipLen;
  verdict = Verdict.Tun;
  if (st.modeTap) addEthernet();
}

function addEthernet(): void {
  const p = outIp - ETH_HLEN;
  // the slot's bounds hold for every write: a frame that came without a link header may have no room
  if (p < lowestStart) { drop(Drop.BadSlot); return; }
  emitEthernet(p, st.CONFIG + CFG_TAP_PEER_MAC, st.CONFIG + CFG_ENGINE_MAC, pkt.v6 ? ETH_P_IPV6 : ETH_P_IPV4);
  outIp = p; outLen += ETH_HLEN;
}

function toOverlay(r: usize, room: u32, g: usize): void {
  const mtu = st.underlayMtu;
  if (pkt.gso) {
    if (pkt.proto != PROTO_TCP) { drop(Drop.GsoUnsupported); return; }
    // segments must fit the tunnel: a too large MSS is answered like any too big packet
    const segLen = segment.headerLen() + segment.gsoSize();
    if (segLen + overlay.ENCAP_LEN <= mtu) {
      if (st.tunnelGso) {
        const frame = overlay.encapTunnelGso(r, room, segment.gsoSize());
        if (frame != 0) {
          outIp = frame; outLen = <u32>(pkt.ip + pkt.ipLen - frame);
          peerOut = load<u32>(r + gen.R_UNDERLAY);
          verdict = Verdict.Overlay;
          note |= Note.ENCAP | Note.GSO | Note.TUNNEL_GSO;
          st.count(C_TUNNEL_GSO_SENT);
          return;
        }
      }
      const before = segment.extraCount();
      if (!segment.segment(r, overlay.ENCAP_LEN, load<u32>(r + gen.R_UNDERLAY), service)) { drop(Drop.GsoUnsupported); return; }
      st.count(Verdict.Overlay, <u64>(segment.extraCount() - before));
      note |= Note.GSO;
    } else if (!tooBig(room, mtu)) return;
    else { drop(Drop.TooBig); return; }
  } else if (pkt.ipLen + overlay.ENCAP_LEN > mtu) {
    if (!tooBig(room, mtu)) return;
    drop(Drop.TooBig);
    return;
  }
  // the underlay socket offloads nothing: a checksum the kernel was to finish is finished here
  pkt.completePartial();
  const outer = overlay.encap(r, room);
  if (outer == 0) { drop(Drop.BadSlot); return; }
  outIp = outer; outLen = pkt.ipLen + overlay.ENCAP_LEN;
  peerOut = load<u32>(r + gen.R_UNDERLAY);
  verdict = Verdict.Overlay;
  note |= Note.ENCAP;
}

/** Answers a packet too big for the tunnel with the inner MTU, as the Linux vxlan device does.
 *  Returns true when it could not (the caller drops the packet). */
function tooBig(room: u32, mtu: u32): bool {
  const df = pkt.v6 || pkt.gso || (ld16(pkt.ip + 6) & 0x4000) != 0;
  if (df && reply.mayAnswerWithError() && ratelimit.allow(st.nowSec) && reply.makeTooBig(room, masqFor(), mtu - overlay.ENCAP_LEN)) {
    reason = Drop.TooBig; note |= Note.REPLY_MADE; st.count(C_REPLIES_MADE);
    outIp = reply.outIp; outLen = reply.outLen; verdict = Verdict.Tun;
    if (st.modeTap) addEthernet();
    if (verdict != Verdict.Drop) clearVnet(outIp);
    return false;
  }
  return true;
}


// ── TAP mode: ARP ──────────────────────────────────────────────────────────────────────

/** The core is the gateway on the TAP link: it answers every ARP request with its own MAC
 *  (proxy ARP), and the kernel then hands it every routed frame. */
function answerArp(frame: usize, len: u32): void {
  const a = frame + ETH_HLEN;
  const d = checkArp(a, len - ETH_HLEN);
  if (d != Drop.None) { drop(d); return; }
  if (Arp.at(a).oper != ARP_REQUEST) { drop(Drop.BadArp); return; }
  // RFC 5227: a probe (sender 0.0.0.0) or an announcement (sender = target) checks or claims the
  // asker's own address; answering it with our MAC would read as an address conflict.
  const sender = Arp.at(a).senderIp;
  if (sender == 0 || sender == Arp.at(a).targetIp) { drop(Drop.BadArp); return; }
  emitArpReply(a, st.CONFIG + CFG_ENGINE_MAC);
  emitEthernet(frame, a + 18, st.CONFIG + CFG_ENGINE_MAC, ETH_P_ARP);
  outIp = frame; outLen = ETH_HLEN + 28;
  verdict = Verdict.Tun;
  note |= Note.ARP_ANSWERED;
}
