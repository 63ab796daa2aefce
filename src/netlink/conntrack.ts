// ctnetlink requests the host makes itself (linux/netfilter/nfnetlink_conntrack.h), and the entries
// a dump answers with. The per-flow NEW and DELETE of offload mode are the core's
// (assembly/wire/ctnetlink.ts); here are the rarer ones: list the entries the engine made (by their
// mark), and flush the UDP entries of a backend a reload took away, with a kernel-side filter.
import { OFFLOAD_MARK } from "../engine/abi.js";
import { formatIp, parseIp, type Ip } from "../model/addr.js";
import { type Attr, message, parseAttrs } from "./message.js";

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_NEW = 0, IPCTNL_MSG_CT_GET = 1, IPCTNL_MSG_CT_DELETE = 2;
const NLM_F_DUMP = 0x300;
const AF_UNSPEC = 0, AF_INET = 2, AF_INET6 = 10;

const CTA_TUPLE_ORIG = 1, CTA_TUPLE_REPLY = 2, CTA_STATUS = 3, CTA_PROTOINFO = 4, CTA_TIMEOUT = 7, CTA_MARK = 8,
  CTA_COUNTERS_ORIG = 9, CTA_COUNTERS_REPLY = 10, CTA_MARK_MASK = 21, CTA_FILTER = 25;
const CTA_TUPLE_IP = 1, CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1, CTA_IP_V4_DST = 2, CTA_IP_V6_SRC = 3, CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1, CTA_PROTO_SRC_PORT = 2, CTA_PROTO_DST_PORT = 3;
const CTA_PROTOINFO_TCP = 1, CTA_PROTOINFO_TCP_STATE = 1;
const CTA_COUNTERS_PACKETS = 1, CTA_COUNTERS_BYTES = 2;
// CTA_FILTER's flag words (net/netfilter/nf_conntrack_netlink.c), host order
const CTA_FILTER_ORIG_FLAGS = 1, CTA_FILTER_REPLY_FLAGS = 2;
const F_IP_SRC = 1 << 0, F_IP_DST = 1 << 1, F_PROTO_NUM = 1 << 3, F_PROTO_SRC_PORT = 1 << 4, F_PROTO_DST_PORT = 1 << 5;
const PROTO_UDP = 17;

/** TCP states of nf_conntrack_proto_tcp (enum tcp_conntrack). */
const TCP_STATES = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"];

const be16 = (type: number, v: number): Attr => { const d = Buffer.alloc(2); d.writeUInt16BE(v); return { type, data: d }; };
const be32 = (type: number, v: number): Attr => { const d = Buffer.alloc(4); d.writeUInt32BE(v >>> 0); return { type, data: d }; };
const u8 = (type: number, v: number): Attr => ({ type, data: Buffer.from([v]) });
const u32 = (type: number, v: number): Attr => { const d = Buffer.alloc(4); d.writeUInt32LE(v >>> 0); return { type, data: d }; };
const addr = (type4: number, type6: number, ip: Ip): Attr =>
  ({ type: ip.family === 4 ? type4 : type6, data: Buffer.from(ip.family === 4 ? ip.bytes.subarray(12) : ip.bytes) });

function nfgenmsg(family: number): Buffer {
  return Buffer.from([family, 0, 0, 0]);
}

function ctMessage(msg: number, flags: number, seq: number, family: number, attrs: Attr[]): Buffer {
  return message((NFNL_SUBSYS_CTNETLINK << 8) | msg, flags, seq, nfgenmsg(family), attrs);
}

const markAttrs = (): Attr[] => [be32(CTA_MARK, OFFLOAD_MARK), be32(CTA_MARK_MASK, 0xffffffff)];

/** A dump of the entries the engine made (mark "wasp"), filtered in the kernel. */
export function dumpOffloaded(seq: number): Buffer {
  return ctMessage(IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq, AF_UNSPEC, markAttrs());
}

/** What a reload took away from a UDP service entry: its address (absent for a NodePort's "any
 *  address" entry) and port, and one backend. */
export interface GoneUdpBackend { vip?: string; port: number; backend: string; backendPort: number }

/** Deletes, in the kernel, every UDP entry the engine made for flows of that entry to that backend
 *  (kube-proxy clears stale UDP conntrack this way): one request, a filter the kernel applies. */
export function flushUdpBackend(seq: number, g: GoneUdpBackend): Buffer {
  const be = parseIp(g.backend);
  if (!be) throw new TypeError(`"${g.backend}" is not an IP address`);
  const vip = g.vip === undefined ? undefined : parseIp(g.vip);
  const orig: Attr[] = [
    ...(vip ? [{ type: CTA_TUPLE_IP, nested: [addr(CTA_IP_V4_DST, CTA_IP_V6_DST, vip)] }] : []),
    { type: CTA_TUPLE_PROTO, nested: [u8(CTA_PROTO_NUM, PROTO_UDP), be16(CTA_PROTO_DST_PORT, g.port)] },
  ];
  const reply: Attr[] = [
    { type: CTA_TUPLE_IP, nested: [addr(CTA_IP_V4_SRC, CTA_IP_V6_SRC, be)] },
    { type: CTA_TUPLE_PROTO, nested: [u8(CTA_PROTO_NUM, PROTO_UDP), be16(CTA_PROTO_SRC_PORT, g.backendPort)] },
  ];
  return ctMessage(IPCTNL_MSG_CT_DELETE, 0, seq, be.family === 4 ? AF_INET : AF_INET6, [
    { type: CTA_TUPLE_ORIG, nested: orig },
    { type: CTA_TUPLE_REPLY, nested: reply },
    ...markAttrs(),
    { type: CTA_FILTER, nested: [
      u32(CTA_FILTER_ORIG_FLAGS, (vip ? F_IP_DST : 0) | F_PROTO_NUM | F_PROTO_DST_PORT),
      u32(CTA_FILTER_REPLY_FLAGS, F_IP_SRC | F_PROTO_NUM | F_PROTO_SRC_PORT),
    ] },
  ]);
}

export interface KernelTuple { src: string; dst: string; sport: number; dport: number }
/** One conntrack entry as a dump gives it. */
export interface KernelFlow {
  proto: number;
  orig: KernelTuple;
  reply: KernelTuple;
  /** The TCP state name (tcp only), or "". */
  state: string;
  timeoutSec: number;
  status: number;
  mark: number;
  /** With net.netfilter.nf_conntrack_acct = 1 when the entry was made; 0 otherwise. */
  packets: number;
  bytes: number;
}

function tupleOf(b: Buffer | undefined): { proto: number; t: KernelTuple } {
  const a = parseAttrs(b ?? Buffer.alloc(0));
  const ip = parseAttrs(a.get(CTA_TUPLE_IP) ?? Buffer.alloc(0)), pr = parseAttrs(a.get(CTA_TUPLE_PROTO) ?? Buffer.alloc(0));
  const text = (v4: number, v6: number) => {
    const d = ip.get(v4) ?? ip.get(v6);
    if (!d) return "";
    const bytes = new Uint8Array(16);
    if (d.length === 4) { bytes[10] = 0xff; bytes[11] = 0xff; bytes.set(d, 12); } else bytes.set(d);
    return formatIp({ family: d.length === 4 ? 4 : 6, bytes });
  };
  return {
    proto: pr.get(CTA_PROTO_NUM)?.[0] ?? 0,
    t: { src: text(CTA_IP_V4_SRC, CTA_IP_V6_SRC), dst: text(CTA_IP_V4_DST, CTA_IP_V6_DST),
      sport: pr.get(CTA_PROTO_SRC_PORT)?.readUInt16BE(0) ?? 0, dport: pr.get(CTA_PROTO_DST_PORT)?.readUInt16BE(0) ?? 0 },
  };
}

/** The entries in the answers of a dump (NEW messages; anything else is passed over). */
export function parseFlows(replies: Buffer): KernelFlow[] {
  const out: KernelFlow[] = [];
  for (let p = 0; p + 16 <= replies.length;) {
    const len = replies.readUInt32LE(p), type = replies.readUInt16LE(p + 4);
    if (len < 16 || p + len > replies.length) break;
    if (type === ((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW)) {
      const a = parseAttrs(replies.subarray(p + 20, p + len));
      const o = tupleOf(a.get(CTA_TUPLE_ORIG)), r = tupleOf(a.get(CTA_TUPLE_REPLY));
      const tcp = parseAttrs(parseAttrs(a.get(CTA_PROTOINFO) ?? Buffer.alloc(0)).get(CTA_PROTOINFO_TCP) ?? Buffer.alloc(0));
      const counters = (t: number) => { const c = parseAttrs(a.get(t) ?? Buffer.alloc(0)); return { p: c.get(CTA_COUNTERS_PACKETS), b: c.get(CTA_COUNTERS_BYTES) }; };
      const co = counters(CTA_COUNTERS_ORIG), cr = counters(CTA_COUNTERS_REPLY);
      const n64 = (x: Buffer | undefined) => (x && x.length === 8 ? Number(x.readBigUInt64BE(0)) : 0);
      const st = tcp.get(CTA_PROTOINFO_TCP_STATE)?.[0];
      out.push({
        proto: o.proto, orig: o.t, reply: r.t, state: st === undefined ? "" : TCP_STATES[st] ?? String(st),
        timeoutSec: a.get(CTA_TIMEOUT)?.readUInt32BE(0) ?? 0, status: a.get(CTA_STATUS)?.readUInt32BE(0) ?? 0,
        mark: a.get(CTA_MARK)?.readUInt32BE(0) ?? 0,
        packets: n64(co.p) + n64(cr.p), bytes: n64(co.b) + n64(cr.b),
      });
    }
    p += (len + 3) & ~3;
  }
  return out;
}

