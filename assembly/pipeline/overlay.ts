// VXLAN (RFC 7348) in the Linux/flannel convention: outer IPv4/UDP to the remote node's underlay
// address, VNI and port from the config, inner Ethernet addressed to the remote VTEP's MAC.
import { Drop } from "../abi";
import { ld16, st16 } from "../mem";
import { checkVxlan, emitVxlan, Vxlan, VXLAN_HLEN } from "../wire/vxlan";
import { emitEthernet, ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6 } from "../wire/ethernet";
import { emitIpv4, IPV4_MIN_LEN } from "../wire/ipv4";
import { PROTO_UDP, UDP_LEN } from "../wire/l4";
import { peerKnown, R_MAC, R_UNDERLAY } from "../table/generation";
import { CONFIG, nextIpId, underlayIp, vni, vxlanPort } from "../state";
import { CFG_VTEP_MAC } from "../abi";
import { hashTuple } from "../table/hash";
import * as pkt from "./packet";

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
  st16(udp, flowPort());
  st16(udp + 2, vxlanPort);
  st16(udp + 4, UDP_LEN + VXLAN_HLEN + ETH_HLEN + innerLen);
  // RFC 7348 §5: the UDP checksum SHOULD be zero over IPv4; Linux receivers accept it.
  st16(udp + 6, 0);
  emitIpv4(outer, ENCAP_LEN + innerLen, nextIpId(), false, OUTER_TTL, PROTO_UDP,
    bswap<u32>(underlayIp), bswap<u32>(load<u32>(route + R_UNDERLAY)));
  return outer;
}
