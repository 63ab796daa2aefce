// Where a packet leaves: routed to the TUN/TAP (a local pod, the host) or encapsulated to another
// node, or answered by the core itself (ICMP error, RST, echo reply) and sent back to its sender.
// Each finisher sets the verdict and the output in the slot's result (result.ts).
import {
  Verdict, Drop, Note, RouteKind, VNET_HDR_LEN, C_REPLIES_MADE, C_TUNNEL_GSO_SENT, CFG_MASQ_ADDR4, CFG_MASQ_ADDR6,
  CFG_ENGINE_MAC, CFG_TAP_PEER_MAC, Stage, TRACE_NO_ROUTE,
} from "../abi";
import { ld16 } from "../mem";
import * as st from "../state";
import * as pkt from "./packet";
import * as gen from "../table/generation";
import { PROTO_TCP } from "../wire/l4";
import { ipv4DecTtl } from "../wire/ipv4";
import { ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, emitEthernet } from "../wire/ethernet";
import * as reply from "./reply";
import * as overlay from "./overlay";
import * as trace from "./trace";
import * as segment from "./segment";
import * as ratelimit from "./ratelimit";
import { out, drop } from "./result";

/** The source of the core's own answers and of masquerade: the configured address of the packet's family. */
@inline export function masqFor(): usize { return st.CONFIG + (pkt.v6 ? CFG_MASQ_ADDR6 : CFG_MASQ_ADDR4); }

export function route(g: usize, room: u32, natted: bool, fromOverlay: bool): void {
  const r = gen.routeLookup(g, pkt.DST);
  trace.step(Stage.Route, r == 0 ? TRACE_NO_ROUTE : load<u8>(r + gen.R_KIND), r == 0 ? 0 : load<u32>(r + gen.R_UNDERLAY));
  if (r != 0 && load<u8>(r + gen.R_KIND) == <u8>RouteKind.Remote) {
    // never carry a packet from one node to another: no transit through this node
    if (fromOverlay) { drop(Drop.NoRoute); return; }
    decTtl();
    toOverlay(r, room);
    return;
  }
  if (r == 0 && !natted) {
    // Not ours: the host routes it. In TUN mode this still goes back through the device.
    out.data = pkt.ip; out.len = pkt.ipLen;
    out.verdict = Verdict.Host;
    if (st.modeTap) addEthernet();
    return;
  }
  decTtl();
  toTun();
}

@inline function decTtl(): void {
  if (!pkt.v6) ipv4DecTtl(pkt.ip);
  else store<u8>(pkt.ip + 7, load<u8>(pkt.ip + 7) - 1);
  out.note |= Note.TTL_DECREMENTED;
}

function toTun(): void {
  out.data = pkt.ip; out.len = pkt.ipLen;
  out.verdict = Verdict.Tun;
  if (st.modeTap) addEthernet();
}

/** Offload mode: back to the TUN exactly as it came (TTL and all): the kernel forwards it, and NATs
 *  it by the conntrack entry the engine made for its flow. */
export function toKernel(): void {
  toTun();
}

export function addEthernet(): void {
  const p = out.data - ETH_HLEN;
  // the slot's bounds hold for every write: a frame that came without a link header may have no room
  if (p < out.lowest) { drop(Drop.BadSlot); return; }
  emitEthernet(p, st.CONFIG + CFG_TAP_PEER_MAC, st.CONFIG + CFG_ENGINE_MAC, pkt.v6 ? ETH_P_IPV6 : ETH_P_IPV4);
  out.data = p; out.len += ETH_HLEN;
}

function toOverlay(r: usize, room: u32): void {
  const mtu = st.underlayMtu;
  if (pkt.gso) {
    if (pkt.proto != PROTO_TCP) { drop(Drop.GsoUnsupported); return; }
    // segments must fit the tunnel: a too large MSS is answered like any too big packet
    const segLen = segment.headerLen() + segment.gsoSize();
    if (segLen + overlay.ENCAP_LEN <= mtu) {
      if (st.tunnelGso) {
        const frame = overlay.encapTunnelGso(r, room, segment.gsoSize());
        if (frame != 0) {
          out.data = frame; out.len = <u32>(pkt.ip + pkt.ipLen - frame);
          out.peer = load<u32>(r + gen.R_UNDERLAY);
          out.verdict = Verdict.Overlay;
          out.note |= Note.ENCAP | Note.GSO | Note.TUNNEL_GSO;
          st.count(C_TUNNEL_GSO_SENT);
          return;
        }
      }
      const before = segment.extraCount();
      if (!segment.segment(r, overlay.ENCAP_LEN, load<u32>(r + gen.R_UNDERLAY), out.service)) { drop(Drop.GsoUnsupported); return; }
      st.count(Verdict.Overlay, <u64>(segment.extraCount() - before));
      out.note |= Note.GSO;
    } else {
      if (!answeredTooBig(room, mtu)) drop(Drop.TooBig);
      return;
    }
  } else if (pkt.ipLen + overlay.ENCAP_LEN > mtu) {
    if (!answeredTooBig(room, mtu)) drop(Drop.TooBig);
    return;
  }
  // the underlay socket offloads nothing: a checksum the kernel was to finish is finished here
  pkt.completePartial();
  const outer = overlay.encap(r, room);
  if (outer == 0) { drop(Drop.BadSlot); return; }
  out.data = outer; out.len = pkt.ipLen + overlay.ENCAP_LEN;
  out.peer = load<u32>(r + gen.R_UNDERLAY);
  out.verdict = Verdict.Overlay;
  out.note |= Note.ENCAP;
}

/** Answers a packet too big for the tunnel with the inner MTU, as the Linux vxlan device does.
 *  True when it did: the verdict is set (Tun, or Drop BadSlot when no Ethernet header fits in
 *  TAP mode); false when it may not answer (no DF, an error, rate limited, no room) and sets nothing. */
function answeredTooBig(room: u32, mtu: u32): bool {
  const df = pkt.v6 || pkt.gso || (ld16(pkt.ip + 6) & 0x4000) != 0;
  if (!df || !reply.mayAnswerWithError() || !ratelimit.allow(st.nowSec) || !reply.makeTooBig(room, masqFor(), mtu - overlay.ENCAP_LEN)) return false;
  out.reason = Drop.TooBig; out.note |= Note.REPLY_MADE; st.count(C_REPLIES_MADE);
  out.data = reply.outIp; out.len = reply.outLen; out.verdict = Verdict.Tun;
  if (st.modeTap) addEthernet();
  if (out.verdict != Verdict.Drop) clearVnet(out.data);
  return true;
}

/** The core answered the packet itself (reply in reply.outIp/outLen): send it back where it came from. */
export function answered(why: Drop, g: usize): void {
  out.reason = why;
  out.note |= Note.REPLY_MADE;
  st.count(C_REPLIES_MADE);
  const hadVnet = pkt.vnet != 0;
  out.data = reply.outIp; out.len = reply.outLen;
  // the answer's destination is the sender; route it like any packet (a remote sender: overlay)
  pkt.classify(out.data, out.len, 0);
  const r = gen.routeLookup(g, pkt.DST);
  if (r != 0 && load<u8>(r + gen.R_KIND) == <u8>RouteKind.Remote) {
    toOverlay(r, <u32>(out.data - out.lowest));
    return;
  }
  toTun();
  if (hadVnet && out.verdict != Verdict.Drop) memory.fill(out.data - VNET_HDR_LEN, 0, VNET_HDR_LEN);
}

/** Answers a packet nobody takes with a RST (TCP) or ICMP port unreachable, else drops it for `why`. */
export function reject(why: Drop, room: u32, g: usize): void {
  if (!reply.mayAnswerWithError()) { drop(why); return; }
  let ok = false;
  if (pkt.proto == PROTO_TCP) ok = reply.makeRst(pkt.DST);
  else ok = reply.makePortUnreachable(room, pkt.DST);
  if (ok) answered(why, g); else drop(why);
}

/** A reply the core built has no offloads pending: zero the virtio_net_hdr before its output
 *  start (after any Ethernet header added in TAP mode: the host reads it at data - VNET_HDR_LEN). */
function clearVnet(outStart: usize): void {
  if (pkt.vnet == 0) return;
  memory.fill(outStart - VNET_HDR_LEN, 0, VNET_HDR_LEN);
}
