// The per-packet pipeline, in packet order:
//   link (TAP: ARP, Ethernet) → decap (overlay) → classify → ICMP error translation → conntrack →
//   on a miss: service lookup, backend choice, new flow → NAT → TTL → route → encap → verdict.
// The stages live beside it: flow.ts (conntrack, new flows, NAT), backend.ts (backend choice),
// finish.ts (route, TUN, overlay, the core's own answers), arp.ts; each writes the slot's one
// result record (result.ts), which processBatch publishes.
// Every slot gets exactly one verdict; nothing here allocates or traps on any input.
import {
  Verdict, Drop, Note, SlotFlag, RouteKind, SLOT_SIZE, SLOT_DATA, SLOT_LEN, SLOT_FLAGS, SLOT_VERDICT, SLOT_REASON,
  SLOT_PEER, SLOT_BUF_START, SLOT_BUF_END, SLOT_SERVICE, SLOT_NOTE, VNET_HDR_LEN, C_DROP_BASE, C_BYTES_IN, C_PACKETS_IN,
  C_ICMP_TRANSLATED, C_BATCHES, C_FRAG_RELEASED, C_INNER_CSUM_COMPLETED, C_TUNNEL_GSO_RECEIVED, CFG_SERVICE_CIDR4, CFG_SERVICE_CIDR6,
  CT_SERVICE, Stage,
} from "../abi";
import { addrInPrefix, ld8, ld32 } from "../mem";
import * as st from "../state";
import * as pkt from "./packet";
import * as ct from "../table/conntrack";
import * as gen from "../table/generation";
import { PROTO_TCP } from "../wire/l4";
import { ETH_HLEN, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, Ethernet, checkEthernet } from "../wire/ethernet";
import { VXLAN_HLEN } from "../wire/vxlan";
import * as reply from "./reply";
import * as icmperr from "./icmperr";
import { Quoted } from "./icmperr";
import * as overlay from "./overlay";
import * as frag from "./frag";
import * as hold from "./fraghold";
import { FragMatch } from "./frag";
import * as trace from "./trace";
import * as segment from "./segment";
import { trackedStage, Tracked } from "./flow";
import { route, answered, reject, masqFor, toKernel } from "./finish";
import { answerArp } from "./arp";
import { offloadReset } from "./offload";
import { out, resetResult, drop } from "./result";

/** Runs `count` slots; returns the number not dropped. */
export function processBatch(count: u32, now: u32): u32 {
  st.setNow(now);
  segment.segmentReset();
  offloadReset();
  hold.holdBatchStart();
  if (count > st.maxBatch) count = st.maxBatch;
  let kept: u32 = 0;
  const g = gen.activeGen();
  for (let i: u32 = 0; i < count; i++) {
    const s = st.slots + <usize>i * SLOT_SIZE;
    const firstExtra = segment.extraCount();
    processSlot(s, g, false);
    if (publish(s, firstExtra)) kept++;
    // A first fragment that found its flow brings the fragments that came before it (fraghold.ts),
    // each run as a slot of its own, right after it.
    for (let r = hold.nextRelease(); r != 0; r = hold.nextRelease()) {
      const rFirstExtra = segment.extraCount();
      processSlot(r, g, true);
      st.count(C_FRAG_RELEASED);
      if (publish(r, rFirstExtra)) kept++;
    }
  }
  st.count(C_BATCHES);
  return kept;
}

/** Writes the result of slot s into it and counts it; true when the packet goes on. */
function publish(s: usize, firstExtra: u32): bool {
  store<u8>(s + SLOT_VERDICT, <u8>out.verdict);
  store<u8>(s + SLOT_REASON, <u8>out.reason);
  store<u32>(s + SLOT_SERVICE, out.service);
  store<u32>(s + SLOT_NOTE, out.note);
  // a held fragment is not lost: counted as held, and as a packet when it is released
  if (out.reason == Drop.FragmentHeld) return false;
  st.count(<u32>out.verdict);
  if (out.reason != Drop.None) st.count(C_DROP_BASE + <u32>out.reason);
  if (out.verdict == Verdict.Drop) return false;
  store<u32>(s + SLOT_DATA, <u32>out.data);
  store<u32>(s + SLOT_LEN, out.len);
  if (out.verdict == Verdict.Overlay) {
    store<u32>(s + SLOT_PEER, out.peer);
    segment.appendOverlayOut(s, firstExtra);
  }
  return true;
}

/** `released`: a held fragment run again (fraghold.ts), already counted in when it came. */
function processSlot(s: usize, g: usize, released: bool): void {
  const flags = <u32>load<u16>(s + SLOT_FLAGS);
  let data = <usize>load<u32>(s + SLOT_DATA);
  let len = load<u32>(s + SLOT_LEN);
  const bufStart = <usize>load<u32>(s + SLOT_BUF_START), bufEnd = <usize>load<u32>(s + SLOT_BUF_END);
  const hasVnet = (flags & SlotFlag.VNET) != 0;
  const lead: usize = hasVnet ? <usize>VNET_HDR_LEN : 0;
  resetResult(s, bufStart + lead);
  // The host's slot must lie inside the packet buffer area: the core never writes elsewhere (a
  // released slot is the core's own, in the hold pool's buffers).
  if ((!released && (bufStart < st.bufArea || bufEnd > st.bufAreaEnd)) || bufStart > bufEnd || data < bufStart + lead ||
      <u64>data + <u64>len > <u64>bufEnd) { drop(Drop.BadSlot); return; }
  if (!released) {
    st.count(C_PACKETS_IN);
    st.count(C_BYTES_IN, <u64>len);
  }
  trace.begin((flags & SlotFlag.TRACE) != 0, s);
  let vnetHdr: usize = hasVnet ? data - VNET_HDR_LEN : 0;
  const fromOverlay = (flags & SlotFlag.FROM_OVERLAY) != 0;
  const peer = load<u32>(s + SLOT_PEER);

  if (fromOverlay) {
    const d = overlay.checkDecap(g, data, len, peer);
    if (d != Drop.None) { drop(d); trace.step(Stage.Decap, d, peer); return; }
    data += VXLAN_HLEN + ETH_HLEN; len -= VXLAN_HLEN + ETH_HLEN;
    out.note |= Note.DECAP;
    // a peer's TSO packet that came whole goes on whole, as a GSO packet (never in TAP mode:
    // there the vnet header would have to precede an Ethernet header the core adds later)
    if (st.decapGso && !st.modeTap) vnetHdr = overlay.wholeTsoHeader(data, len);
    trace.step(Stage.Decap, 0, peer);
  } else if ((flags & SlotFlag.ETHERNET) != 0) {
    const bad = checkEthernet(len);
    if (bad != Drop.None) { drop(bad); return; }
    const et = Ethernet.at(data).type;
    if (et == ETH_P_ARP) { answerArp(data, len); return; }
    if (et != ETH_P_IPV4 && et != ETH_P_IPV6) { drop(Drop.BadEthernet); return; }
    data += ETH_HLEN; len -= ETH_HLEN;
  }

  const d = pkt.classify(data, len, vnetHdr);
  trace.step(Stage.Parse, d, pkt.proto);
  if (d != Drop.None) { drop(d); return; }
  if (pkt.gso) {
    out.note |= Note.GSO;
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
    if (reply.mayAnswerWithError() && reply.makeTimeExceeded(room, masqFor())) answered(Drop.TtlExceeded, g);
    else drop(Drop.TtlExceeded);
    return;
  }

  let natted = false;
  if (icmperr.isIcmpError()) {
    const q = icmperr.translateIcmpError();
    if (q == Quoted.Malformed) { drop(Drop.BadIcmpError); return; }
    if (q == Quoted.Translated) {
      natted = true; out.note |= Note.ICMP_ERROR_TRANSLATED; st.count(C_ICMP_TRANSLATED);
      out.service = load<u32>(ct.rec(icmperr.flowIdx) + CT_SERVICE);
    }
  } else if (pkt.tracked) {
    const t = trackedStage(g, room);
    if (t == Tracked.Final) return;
    if (t == Tracked.Offloaded) { toKernel(); return; }
    natted = t == Tracked.Existing || t == Tracked.Created;
  } else if (pkt.isFrag && !pkt.fragFirst && st.offload && inServiceCidr()) {
    // offload mode: the kernel reassembles a datagram before it NATs it by the first fragment's flow
    toKernel();
    return;
  } else if (pkt.isFrag && !pkt.fragFirst) {
    const f = frag.lookup(g);
    if (f == FragMatch.Orphan) {
      // its first fragment may still come (reordered): wait for it, unless this is the wait's end
      if (!released && hold.hold(s, <usize>load<u32>(s + SLOT_DATA), load<u32>(s + SLOT_LEN), lead)) drop(Drop.FragmentHeld);
      else drop(Drop.FragmentUntracked);
      return;
    }
    if (f == FragMatch.Rewritten) { natted = true; out.note |= Note.FRAGMENT; }
  }
  if (!natted && inServiceCidr()) {
    // A service address with no service on this port: reject, never route it back to the TUN (a loop).
    reject(Drop.NoService, room, g);
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

/** Is the destination inside the service CIDR of its family? */
function inServiceCidr(): bool {
  const c = st.CONFIG + (pkt.v6 ? CFG_SERVICE_CIDR6 : CFG_SERVICE_CIDR4);
  const len = load<u32>(c + 16);
  return len != 0 && addrInPrefix(pkt.DST, c, len);
}
