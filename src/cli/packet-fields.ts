// The fields of an IP packet that replay's listing and filter name: addresses, protocol, ports, TCP
// flags, ICMP type; read from the bytes as captured (a host-side reader for the CLI: the core has its
// own views in assembly/wire/, and nothing here feeds the engine).
import { formatIp, type Ip } from "../model/addr.js";
import { foldChecksum, sum16 } from "../packet/checksum.js";

export const PROTO_NAMES: Readonly<Record<number, string>> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp" };

export interface IpFields {
  family: 4 | 6;
  src: string;
  dst: string;
  srcIp: Ip;
  dstIp: Ip;
  /** IPv4 protocol, or IPv6 next header after the extension headers this reader skips. */
  proto: number;
  /** IPv6 next header of the fixed header; IPv4: proto (what tcpdump's `proto` primitives test). */
  firstNext: number;
  /** Ports of TCP/UDP/SCTP in the first fragment (or an unfragmented packet). */
  sport?: number;
  dport?: number;
  /** TCP flags byte. */
  tcpFlags?: number;
  icmpType?: number;
  icmpCode?: number;
  /** IPv4: a fragment other than the first (its ports are not in it). */
  laterFragment: boolean;
  /** Bytes from the IP header to the end of the packet. */
  len: number;
  /** Offset of the L4 header. */
  l4: number;
}

const ip16 = (b: Uint8Array, o: number, family: 4 | 6): Ip => {
  const bytes = new Uint8Array(16);
  if (family === 4) { bytes[10] = 0xff; bytes[11] = 0xff; bytes.set(b.subarray(o, o + 4), 12); } else bytes.set(b.subarray(o, o + 16));
  return { family, bytes };
};

// IPv6 extension headers with the generic (next, length in 8-byte units) layout (RFC 8200 §4).
const IPV6_EXT = new Set([0, 43, 60]);

/** The fields of the IP packet at the start of `p`, or undefined when it is too short to have them. */
export function ipFields(p: Uint8Array): IpFields | undefined {
  const ver = p[0]! >> 4;
  let proto: number, l4: number, laterFragment = false, first: number;
  let family: 4 | 6;
  if (ver === 4) {
    if (p.length < 20) return undefined;
    family = 4;
    proto = p[9]!; first = proto;
    l4 = (p[0]! & 15) * 4;
    laterFragment = (((p[6]! << 8) | p[7]!) & 0x1fff) !== 0;
  } else if (ver === 6) {
    if (p.length < 40) return undefined;
    family = 6;
    proto = p[6]!; first = proto; l4 = 40;
    for (let hops = 0; hops < 8; hops++) {
      if (IPV6_EXT.has(proto) && l4 + 8 <= p.length) { const next = p[l4]!; l4 += (p[l4 + 1]! + 1) * 8; proto = next; continue; }
      if (proto === 44 && l4 + 8 <= p.length) {
        laterFragment = (((p[l4 + 2]! << 8) | p[l4 + 3]!) & 0xfff8) !== 0;
        proto = p[l4]!; l4 += 8; continue;
      }
      break;
    }
  } else return undefined;
  const srcIp = ip16(p, family === 4 ? 12 : 8, family), dstIp = ip16(p, family === 4 ? 16 : 24, family);
  const f: IpFields = {
    family, src: formatIp(srcIp), dst: formatIp(dstIp), srcIp, dstIp,
    proto, firstNext: first, laterFragment, len: p.length, l4,
  };
  if (laterFragment) return f;
  if ((proto === 6 || proto === 17 || proto === 132) && l4 + 4 <= p.length) {
    f.sport = (p[l4]! << 8) | p[l4 + 1]!;
    f.dport = (p[l4 + 2]! << 8) | p[l4 + 3]!;
    if (proto === 6 && l4 + 14 <= p.length) f.tcpFlags = p[l4 + 13]!;
  } else if ((proto === 1 || proto === 58) && l4 + 2 <= p.length) {
    f.icmpType = p[l4]!;
    f.icmpCode = p[l4 + 1]!;
  }
  return f;
}

// tcpdump's order (print-tcp.c tcp_flag_values): F S R P . U E W
const TCP_FLAG_NAMES: ReadonlyArray<[number, string]> = [[0x01, "F"], [0x02, "S"], [0x04, "R"], [0x08, "P"], [0x10, "."], [0x20, "U"], [0x40, "E"], [0x80, "W"]];

/** tcpdump's way of writing TCP flags: [S], [S.], [P.], [F.], [R]. */
export function tcpFlagsText(f: number): string {
  return `[${TCP_FLAG_NAMES.filter(([bit]) => f & bit).map(([, n]) => n).join("")}]`;
}

/** One line for a tuple: `tcp 10.244.1.2:40000 > 10.96.0.10:80 [S]`, `icmp 10.244.1.2 > 10.96.0.10 type 8`. */
export function describeFields(f: IpFields): string {
  const name = PROTO_NAMES[f.proto] ?? `proto ${f.proto}`;
  const hp = (a: string, port: number | undefined) => (port === undefined ? a : `${f.family === 6 ? `[${a}]` : a}:${port}`);
  const tail = f.tcpFlags !== undefined ? ` ${tcpFlagsText(f.tcpFlags)}` : f.icmpType !== undefined ? ` type ${f.icmpType}${f.icmpCode ? ` code ${f.icmpCode}` : ""}` : f.laterFragment ? " (fragment)" : "";
  return `${name} ${hp(f.src, f.sport)} > ${hp(f.dst, f.dport)}${tail}`;
}

/** A VXLAN datagram's inner IP packet (UDP to `port`, then 8 bytes VXLAN and 14 Ethernet). */
export function vxlanInner(p: Uint8Array, f: IpFields, port: number): { vni: number; ip: Uint8Array } | undefined {
  if (f.proto !== 17 || f.dport !== port) return undefined;
  const vx = f.l4 + 8, eth = vx + 8, ip = eth + 14;
  if (p.length <= ip) return undefined;
  const et = (p[eth + 12]! << 8) | p[eth + 13]!;
  if (et !== 0x0800 && et !== 0x86dd) return undefined;
  return { vni: (p[vx + 4]! << 16) | (p[vx + 5]! << 8) | p[vx + 6]!, ip: p.subarray(ip) };
}

/**
 * Where a TCP or UDP packet's checksum is left to offload (the kernel's CHECKSUM_PARTIAL, as a
 * capture on a TUN or veth shows what a pod sent): its checksum field holds only the folded
 * pseudo-header sum (tcp_v4_send_check: th->check = ~tcp_v4_check(len, saddr, daddr, 0)), and the
 * whole packet does not sum to a valid checksum. Returns the checksum's offset from the IP header
 * and its field's offset in the L4 header (virtio_net_hdr csum_start, csum_offset), else undefined.
 */
export function partialChecksum(p: Uint8Array, f: IpFields): { start: number; offset: number } | undefined {
  if (f.laterFragment || (f.proto !== 6 && f.proto !== 17) || (f.family === 4 && ((p[6]! & 0x20) !== 0))) return undefined;
  const field = f.proto === 6 ? 16 : 6, len = p.length - f.l4;
  if (f.l4 + field + 2 > p.length) return undefined;
  const check = (p[f.l4 + field]! << 8) | p[f.l4 + field + 1]!;
  if (f.proto === 17 && check === 0) return undefined; // UDP over IPv4 without a checksum
  const addrs = f.family === 4 ? sum16(p, 12, 20) : sum16(p, 8, 40);
  const pseudo = addrs + f.proto + (len & 0xffff) + (len >>> 16);
  if (foldChecksum(sum16(p, f.l4, p.length, pseudo)) === 0) return undefined; // a whole, valid checksum
  return (~foldChecksum(pseudo) & 0xffff) === check ? { start: f.l4, offset: field } : undefined;
}
