// rtnetlink messages as bytes (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
// linux/if_addr.h, linux/neighbour.h, linux/veth.h). Pure functions: the addon only sends them.
import { macBytes, parseIp } from "../model/addr.js";

export const NLM_F_REQUEST = 0x1, NLM_F_ACK = 0x4;
export const NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400;
export const RTM_NEWLINK = 16, RTM_DELLINK = 17, RTM_GETLINK = 18, RTM_NEWADDR = 20, RTM_NEWROUTE = 24, RTM_NEWNEIGH = 28;
export const IFLA_ADDRESS = 1, IFLA_IFNAME = 3, IFLA_MTU = 4, IFLA_LINKINFO = 18, IFLA_STATS64 = 23, IFLA_NET_NS_FD = 28;
export const IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2, VETH_INFO_PEER = 1;
export const IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_FLAGS = 8, IFA_F_NODAD = 0x02;
export const RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5;
export const NDA_DST = 1, NDA_LLADDR = 2, NUD_PERMANENT = 0x80;
export const IFF_UP = 0x1, RTNH_F_ONLINK = 0x4;
export const RT_TABLE_MAIN = 254, RTPROT_BOOT = 3, RT_SCOPE_UNIVERSE = 0, RT_SCOPE_LINK = 253, RTN_UNICAST = 1;
const AF_INET = 2, AF_INET6 = 10, AF_UNSPEC = 0;

/** One attribute: type and payload; a nested attribute's payload is its children. */
export type Attr = { type: number; data: Buffer } | { type: number; nested: Attr[] };

const align4 = (n: number) => (n + 3) & ~3;
const NLA_F_NESTED = 0x8000;

export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const data = "nested" in a ? encodeAttrs(a.nested) : a.data;
    const head = Buffer.alloc(4);
    head.writeUInt16LE(4 + data.length, 0);
    // NLA_F_NESTED: the kernel's strict parsers (ctnetlink's CTA_FILTER) refuse a nest without it
    head.writeUInt16LE("nested" in a ? a.type | NLA_F_NESTED : a.type, 2);
    parts.push(head, data, Buffer.alloc(align4(data.length) - data.length));
  }
  return Buffer.concat(parts);
}

/** The 16-byte nlmsghdr in front of the family header and the attributes. */
export function message(type: number, flags: number, seq: number, body: Buffer, attrs: readonly Attr[] = []): Buffer {
  const payload = Buffer.concat([body, encodeAttrs(attrs)]);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags | NLM_F_REQUEST | NLM_F_ACK, 6);
  h.writeUInt32LE(seq >>> 0, 8);
  return Buffer.concat([h, payload]);
}

/** struct ifinfomsg (16 bytes). */
export function ifinfomsg(index = 0, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(AF_UNSPEC, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

export const str = (type: number, s: string): Attr => ({ type, data: Buffer.from(s + "\0") });
export const u32 = (type: number, v: number): Attr => { const d = Buffer.alloc(4); d.writeUInt32LE(v >>> 0); return { type, data: d }; };
export const bytes = (type: number, data: Buffer): Attr => ({ type, data });

function mac(text: string): Buffer {
  return Buffer.from(macBytes(text));
}

/** The address in network byte order with its address family. */
export function ipBytes(text: string): { family: number; data: Buffer } {
  const ip = parseIp(text);
  if (!ip) throw new TypeError(`not an IP address: ${text}`);
  return { family: ip.family === 4 ? AF_INET : AF_INET6, data: Buffer.from(ip.family === 4 ? ip.bytes.subarray(12) : ip.bytes) };
}

export interface VethSpec {
  name: string; mtu: number; mac: string;
  peer: { name: string; mtu: number; mac: string; netnsFd: number };
}

/** ip link add NAME mtu M address A type veth peer name P mtu M address B netns FD */
export function newVeth(seq: number, v: VethSpec): Buffer {
  const peer = Buffer.concat([ifinfomsg(), encodeAttrs([
    str(IFLA_IFNAME, v.peer.name), u32(IFLA_MTU, v.peer.mtu), bytes(IFLA_ADDRESS, mac(v.peer.mac)),
    u32(IFLA_NET_NS_FD, v.peer.netnsFd),
  ])]);
  return message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq, ifinfomsg(), [
    str(IFLA_IFNAME, v.name), u32(IFLA_MTU, v.mtu), bytes(IFLA_ADDRESS, mac(v.mac)),
    { type: IFLA_LINKINFO, nested: [str(IFLA_INFO_KIND, "veth"), { type: IFLA_INFO_DATA, nested: [bytes(VETH_INFO_PEER, peer)] }] },
  ]);
}

/** ip link set dev INDEX up */
export function linkUp(seq: number, index: number): Buffer {
  return message(RTM_NEWLINK, 0, seq, ifinfomsg(index, IFF_UP, IFF_UP));
}

/** ip link del NAME */
export function delLink(seq: number, name: string): Buffer {
  return message(RTM_DELLINK, 0, seq, ifinfomsg(), [str(IFLA_IFNAME, name)]);
}

/** ip link show NAME (the answer is one RTM_NEWLINK) */
export function getLink(seq: number, name: string): Buffer {
  return message(RTM_GETLINK, 0, seq, ifinfomsg(), [str(IFLA_IFNAME, name)]);
}

/** ip addr add IP/PREFIX dev INDEX [nodad] */
export function newAddr(seq: number, index: number, ip: string, prefix: number, opts: { nodad?: boolean } = {}): Buffer {
  const a = ipBytes(ip);
  const body = Buffer.alloc(8);
  body.writeUInt8(a.family, 0);
  body.writeUInt8(prefix, 1);
  body.writeUInt8(RT_SCOPE_UNIVERSE, 3);
  body.writeUInt32LE(index, 4);
  return message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq, body, [
    bytes(IFA_LOCAL, a.data), bytes(IFA_ADDRESS, a.data),
    ...(opts.nodad ? [u32(IFA_FLAGS, IFA_F_NODAD)] : []),
  ]);
}

export interface RouteSpec {
  dst: string; prefix: number; oif: number;
  gateway?: string; scope?: "link" | "universe"; onlink?: boolean;
  /** route replace instead of route add */
  replace?: boolean;
}

/** ip route add|replace DST/PREFIX [via GW] dev INDEX [scope link] [onlink] */
export function newRoute(seq: number, r: RouteSpec): Buffer {
  const dst = ipBytes(r.dst);
  const body = Buffer.alloc(12);
  body.writeUInt8(dst.family, 0);
  body.writeUInt8(r.prefix, 1);
  body.writeUInt8(RT_TABLE_MAIN, 4);
  body.writeUInt8(RTPROT_BOOT, 5);
  body.writeUInt8(r.scope === "link" ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE, 6);
  body.writeUInt8(RTN_UNICAST, 7);
  body.writeUInt32LE(r.onlink ? RTNH_F_ONLINK : 0, 8);
  return message(RTM_NEWROUTE, NLM_F_CREATE | (r.replace ? NLM_F_REPLACE : NLM_F_EXCL), seq, body, [
    ...(r.prefix > 0 ? [bytes(RTA_DST, dst.data)] : []),
    ...(r.gateway ? [bytes(RTA_GATEWAY, ipBytes(r.gateway).data)] : []),
    u32(RTA_OIF, r.oif),
  ]);
}

/** ip neigh replace IP lladdr MAC dev INDEX nud permanent */
export function replaceNeigh(seq: number, index: number, ip: string, lladdr: string): Buffer {
  const a = ipBytes(ip);
  const body = Buffer.alloc(12);
  body.writeUInt8(a.family, 0);
  body.writeInt32LE(index, 4);
  body.writeUInt16LE(NUD_PERMANENT, 8);
  return message(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, seq, body, [bytes(NDA_DST, a.data), bytes(NDA_LLADDR, mac(lladdr))]);
}

/** The interface index of an RTM_NEWLINK answer (ifi_index after the 16-byte header). */
export function linkIndexOf(reply: Buffer): number | undefined {
  return reply.length >= 16 + 16 && reply.readUInt16LE(4) === RTM_NEWLINK ? reply.readInt32LE(16 + 4) : undefined;
}

/** The attributes of a message body, by type (the nested flag masked off); a torn one ends the list. */
export function parseAttrs(b: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let p = 0; p + 4 <= b.length;) {
    const len = b.readUInt16LE(p), type = b.readUInt16LE(p + 2) & 0x3fff;
    if (len < 4 || p + len > b.length) break;
    out.set(type, b.subarray(p + 4, p + len));
    p += (len + 3) & ~3;
  }
  return out;
}

/** What the kernel dropped at a link (struct rtnl_link_stats64's rx_dropped and tx_dropped, which
 *  include the core's own drops): for a TUN, tx is towards the reading process. */
export interface LinkDrops { rxDropped: number; txDropped: number }

/** The drop counters of an RTM_NEWLINK answer; undefined when it has no IFLA_STATS64. */
export function linkDropsOf(reply: Buffer): LinkDrops | undefined {
  if (reply.length < 32 || reply.readUInt16LE(4) !== RTM_NEWLINK) return undefined;
  const st = parseAttrs(reply.subarray(32, reply.readUInt32LE(0))).get(IFLA_STATS64);
  if (!st || st.length < 64) return undefined;
  return { rxDropped: Number(st.readBigUInt64LE(48)), txDropped: Number(st.readBigUInt64LE(56)) };
}
