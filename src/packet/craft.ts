// Packets the host builds itself, as a pod would send them: `wasp trace` runs one through a twin
// engine, the offline demo feeds the core with them. IPv4 (RFC 791) and IPv6 (RFC 8200) with TCP
// (RFC 9293), UDP (RFC 768) or ICMP echo (RFC 792, RFC 4443), every checksum computed.
import { parseIp } from "../model/addr.js";
import { foldChecksum, sum16 } from "./checksum.js";

export type CraftProto = "tcp" | "udp" | "icmp";

export interface CraftOptions {
  src: string;
  dst: string;
  proto: CraftProto;
  sport?: number;
  dport?: number;
  /** TCP flags (default SYN). */
  tcpFlags?: number;
  payload?: Uint8Array;
  /** Default 63: one kernel hop done (the pod's veth into the node). */
  ttl?: number;
}

export const TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10;
const IPPROTO = { tcp: 6, udp: 17 } as const;

/** An IP packet from `src` to `dst` (both of one family); throws on an address that is not one. */
export function craftPacket(o: CraftOptions): Uint8Array {
  const s = parseIp(o.src), d = parseIp(o.dst);
  if (!s || !d || s.family !== d.family) throw new TypeError(`craft: ${o.src} -> ${o.dst} is not a pair of addresses of one family`);
  const v6 = s.family === 6, payload = o.payload ?? new Uint8Array();
  const pn = o.proto === "icmp" ? (v6 ? 58 : 1) : IPPROTO[o.proto];
  const sport = o.sport ?? 0, dport = o.dport ?? 0;
  let l4: Uint8Array;
  if (o.proto === "tcp") {
    l4 = new Uint8Array(20 + payload.length);
    l4.set([sport >> 8, sport & 255, dport >> 8, dport & 255, 0, 0, 0, 1, 0, 0, 0, (o.tcpFlags ?? TCP_SYN) & TCP_ACK ? 1 : 0, 0x50, o.tcpFlags ?? TCP_SYN, 0xff, 0xff]);
  } else if (o.proto === "udp") {
    l4 = new Uint8Array(8 + payload.length);
    l4.set([sport >> 8, sport & 255, dport >> 8, dport & 255, l4.length >> 8, l4.length & 255]);
  } else {
    l4 = new Uint8Array(8 + payload.length);
    l4.set([v6 ? 128 : 8, 0, 0, 0, 0x77, 0x61, 0, 1]);   // echo request, identifier "wa", sequence 1
  }
  l4.set(payload, l4.length - payload.length);
  const hl = v6 ? 40 : 20, out = new Uint8Array(hl + l4.length), ttl = o.ttl ?? 63;
  if (v6) {
    out.set([0x60, 0, 0, 0, l4.length >> 8, l4.length & 255, pn, ttl]);
    out.set(s.bytes, 8); out.set(d.bytes, 24);
  } else {
    out.set([0x45, 0, out.length >> 8, out.length & 255, 0x12, 0x34, 0x40, 0, ttl, pn, 0, 0]);
    out.set(s.bytes.subarray(12), 12); out.set(d.bytes.subarray(12), 16);
    const c = foldChecksum(sum16(out, 0, 20));
    out[10] = c >> 8; out[11] = c & 255;
  }
  out.set(l4, hl);
  // L4 checksum over the pseudo-header (not for ICMPv4), RFC 768 / 9293 / 4443.
  let acc = 0;
  if (pn !== 1) acc = sum16(out, v6 ? 8 : 12, v6 ? 40 : 20) + pn + l4.length;
  let c = foldChecksum(sum16(out, hl, out.length, acc));
  if (pn === 17 && c === 0) c = 0xffff;   // RFC 768: a computed zero is sent as all ones
  const at = hl + (pn === 6 ? 16 : pn === 17 ? 6 : 2);
  out[at] = c >> 8; out[at + 1] = c & 255;
  return out;
}

/** An Ethernet II frame around an IP packet. */
export function withEthernet(packet: Uint8Array, dstMac: Uint8Array, srcMac: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + packet.length);
  f.set(dstMac, 0); f.set(srcMac, 6);
  const v6 = packet[0]! >> 4 === 6;
  f[12] = v6 ? 0x86 : 0x08; f[13] = v6 ? 0xdd : 0x00;
  f.set(packet, 14);
  return f;
}

/** A VXLAN payload (RFC 7348 §5: I flag and VNI, then the inner Ethernet frame) as a UDP socket receives it. */
export function withVxlan(vni: number, innerFrame: Uint8Array): Uint8Array {
  const v = new Uint8Array(8 + innerFrame.length);
  v.set([0x08, 0, 0, 0, (vni >> 16) & 255, (vni >> 8) & 255, vni & 255, 0]);
  v.set(innerFrame, 8);
  return v;
}
