// ctnetlink requests (linux/netlink.h, linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h): how the
// core hands a flow it decided to the kernel's connection tracking. A message is
//
//   nlmsghdr   u32 len | u16 type (NFNL_SUBSYS_CTNETLINK << 8 | msg) | u16 flags | u32 seq | u32 pid 0
//   nfgenmsg   u8 family (AF_INET, AF_INET6) | u8 version 0 | be16 res_id 0
//   attributes nlattr { u16 len | u16 type } + payload, each padded to 4 bytes; nested ones carry
//              NLA_F_NESTED. The netlink headers are in host order (little-endian here, as wasm);
//              the payloads in network order: addresses, be16 ports, be32 timeout, mark and status.
//
// NEW:    CTA_TUPLE_ORIG, CTA_TUPLE_REPLY (the inverse of orig: the kernel's NAT setup rewrites it),
//         CTA_NAT_DST (the backend's address and port), CTA_NAT_SRC (the masquerade address only: the
//         kernel's nf_nat keeps the source port or picks a unique one, as it does for its own
//         masquerade), CTA_TIMEOUT, CTA_MARK, CTA_PROTOINFO (TCP state). Flags CREATE | EXCL.
// DELETE: CTA_TUPLE_ORIG.
// No request asks for an ack: the kernel answers only a request it refused (an error message whose
// seq, the request's index + 1 in the batch, maps it back), so a batch that went in whole costs the
// host one recv that finds nothing, not one per request.
import { addrIsV4 } from "../mem";
import { PROTO_TCP } from "./l4";

export const NLMSG_HDRLEN: u32 = 16;
export const NFGENMSG_LEN: u32 = 4;
const NLM_F_REQUEST: u16 = 0x1, NLM_F_EXCL: u16 = 0x200, NLM_F_CREATE: u16 = 0x400;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
export const IPCTNL_MSG_CT_NEW: u16 = 0, IPCTNL_MSG_CT_DELETE: u16 = 2;
const AF_INET: u8 = 2, AF_INET6: u8 = 10;
const NLA_F_NESTED: u16 = 0x8000;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1, CTA_TUPLE_REPLY: u16 = 2, CTA_PROTOINFO: u16 = 4, CTA_NAT_SRC: u16 = 6,
  CTA_TIMEOUT: u16 = 7, CTA_MARK: u16 = 8, CTA_NAT_DST: u16 = 13;
// enum ctattr_tuple, ctattr_ip, ctattr_l4proto
const CTA_TUPLE_IP: u16 = 1, CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1, CTA_IP_V4_DST: u16 = 2, CTA_IP_V6_SRC: u16 = 3, CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1, CTA_PROTO_SRC_PORT: u16 = 2, CTA_PROTO_DST_PORT: u16 = 3;
// enum ctattr_protoinfo, ctattr_protoinfo_tcp
const CTA_PROTOINFO_TCP: u16 = 1, CTA_PROTOINFO_TCP_STATE: u16 = 1;
// enum ctattr_nat, ctattr_protonat
const CTA_NAT_V4_MINIP: u16 = 1, CTA_NAT_V4_MAXIP: u16 = 2, CTA_NAT_PROTO: u16 = 3, CTA_NAT_V6_MINIP: u16 = 4,
  CTA_NAT_V6_MAXIP: u16 = 5;
const CTA_PROTONAT_PORT_MIN: u16 = 1, CTA_PROTONAT_PORT_MAX: u16 = 2;

/** enum tcp_conntrack (linux/netfilter/nf_conntrack_tcp.h). */
export const TCP_CONNTRACK_SYN_SENT: u8 = 1, TCP_CONNTRACK_ESTABLISHED: u8 = 3;

/** The longest request this file writes: NEW for IPv6 with every attribute (header 20, two tuples
 *  2 x 60, two NAT ranges 40 + 48, timeout, mark, protoinfo 24): 252 bytes, kept with room. */
export const CTNL_MSG_MAX: u32 = 320;

/** One flow's binding, as the caller fills it (addresses 16 bytes, IPv4-mapped for IPv4; ports host order). */
@final @unmanaged
export class CtBinding {
  src: usize; dst: usize; sport: u32; dport: u32; proto: u32;
  /** The backend (DNAT) and, when masqAddr != 0, the masquerade source (SNAT). */
  backend: usize; backendPort: u32; masqAddr: usize;
  timeoutSec: u32; mark: u32; tcpState: u8;
}

// The writer: a cursor in the caller's buffer. Nothing is written past `limit`: a message that
// would not fit is not begun (the callers size the buffer for a batch's messages).
let at: usize = 0;

@inline function put16(v: u16): void { store<u16>(at, v); at += 2; }
@inline function put32(v: u32): void { store<u32>(at, v); at += 4; }

/** An attribute with `len` payload bytes follows; returns where its payload starts. */
function attr(type: u16, len: u32): usize {
  store<u16>(at, <u16>(4 + len)); store<u16>(at, type, 2);
  const p = at + 4;
  at = (p + len + 3) & ~3;
  memory.fill(p + len, 0, at - (p + len));   // padding is zero
  return p;
}
@inline function attrU8(type: u16, v: u8): void { store<u8>(attr(type, 1), v); }
@inline function attrBe16(type: u16, v: u32): void { store<u16>(attr(type, 2), bswap<u16>(<u16>v)); }
@inline function attrBe32(type: u16, v: u32): void { store<u32>(attr(type, 4), bswap<u32>(v)); }
function attrAddr(type4: u16, type6: u16, a: usize): void {
  if (addrIsV4(a)) store<u32>(attr(type4, 4), load<u32>(a, 12));
  else memory.copy(attr(type6, 16), a, 16);
}
@inline function nestBegin(type: u16): usize { const p = at; store<u16>(p, 0); store<u16>(p, type | NLA_F_NESTED, 2); at += 4; return p; }
@inline function nestEnd(p: usize): void { store<u16>(p, <u16>(at - p)); }

function tuple(type: u16, src: usize, dst: usize, sport: u32, dport: u32, proto: u32): void {
  const t = nestBegin(type);
  const ip = nestBegin(CTA_TUPLE_IP);
  attrAddr(CTA_IP_V4_SRC, CTA_IP_V6_SRC, src);
  attrAddr(CTA_IP_V4_DST, CTA_IP_V6_DST, dst);
  nestEnd(ip);
  const pr = nestBegin(CTA_TUPLE_PROTO);
  attrU8(CTA_PROTO_NUM, <u8>proto);
  attrBe16(CTA_PROTO_SRC_PORT, sport);
  attrBe16(CTA_PROTO_DST_PORT, dport);
  nestEnd(pr);
  nestEnd(t);
}

function natRange(type: u16, addr: usize, port: u32): void {
  const n = nestBegin(type);
  attrAddr(CTA_NAT_V4_MINIP, CTA_NAT_V6_MINIP, addr);
  attrAddr(CTA_NAT_V4_MAXIP, CTA_NAT_V6_MAXIP, addr);
  if (port != 0) {
    const p = nestBegin(CTA_NAT_PROTO);
    attrBe16(CTA_PROTONAT_PORT_MIN, port);
    attrBe16(CTA_PROTONAT_PORT_MAX, port);
    nestEnd(p);
  }
  nestEnd(n);
}

function header(p: usize, msg: u16, flags: u16, seq: u32, v6: bool): void {
  at = p;
  put32(0);                                            // length, set by finish
  put16((NFNL_SUBSYS_CTNETLINK << 8) | msg);
  put16(NLM_F_REQUEST | flags);
  put32(seq);
  put32(0);
  store<u8>(at, v6 ? AF_INET6 : AF_INET); store<u8>(at, 0, 1); store<u16>(at, 0, 2); at += 4;
}

@inline function finish(p: usize): u32 { const len = <u32>(at - p); store<u32>(p, len); return len; }

/** Writes DELETE of the flow whose original tuple is b's at p; returns its length. */
export function emitCtDelete(p: usize, seq: u32, b: CtBinding): u32 {
  header(p, IPCTNL_MSG_CT_DELETE, 0, seq, !addrIsV4(b.src));
  tuple(CTA_TUPLE_ORIG, b.src, b.dst, b.sport, b.dport, b.proto);
  return finish(p);
}

/** Writes NEW with b's NAT binding at p (at most CTNL_MSG_MAX bytes); returns its length. */
export function emitCtNew(p: usize, seq: u32, b: CtBinding): u32 {
  header(p, IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, seq, !addrIsV4(b.src));
  tuple(CTA_TUPLE_ORIG, b.src, b.dst, b.sport, b.dport, b.proto);
  tuple(CTA_TUPLE_REPLY, b.dst, b.src, b.dport, b.sport, b.proto);
  natRange(CTA_NAT_DST, b.backend, b.backendPort);
  if (b.masqAddr != 0) natRange(CTA_NAT_SRC, b.masqAddr, 0);
  attrBe32(CTA_TIMEOUT, b.timeoutSec);
  attrBe32(CTA_MARK, b.mark);
  if (b.proto == PROTO_TCP) {
    const pi = nestBegin(CTA_PROTOINFO);
    const tcp = nestBegin(CTA_PROTOINFO_TCP);
    attrU8(CTA_PROTOINFO_TCP_STATE, b.tcpState);
    nestEnd(tcp);
    nestEnd(pi);
  }
  return finish(p);
}
