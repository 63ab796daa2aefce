// The ctnetlink requests the core writes for offload mode (assembly/wire/ctnetlink.ts), read back by
// tshark's netlink-netfilter dissector and by the layout of linux/netfilter/nfnetlink_conntrack.h;
// that the kernel takes them is shown by the offload integration tests.
import { strict as assert } from "node:assert";
import { HeaderBench } from "./hooks.js";
import { dissect } from "../../helpers/tshark.js";
import { LINKTYPE_NETLINK, NETLINK_NETFILTER, netlinkRecord } from "../../helpers/pcap.js";

const CT_MARK = 0x77617370;

/** 16 bytes of an address, IPv4-mapped for IPv4 (the core's form). */
function addr16(text: string): Uint8Array {
  const o = new Uint8Array(16);
  if (!text.includes(":")) { o.set([0xff, 0xff, ...text.split(".").map(Number)], 10); return o; }
  const [h, t] = text.split("::") as [string, string | undefined];
  const w = (s?: string) => (s ? s.split(":").map((x) => parseInt(x, 16)) : []);
  const a = w(h), b = w(t);
  [...a, ...Array<number>(8 - a.length - b.length).fill(0), ...b].forEach((x, i) => { o[2 * i] = x >> 8; o[2 * i + 1] = x & 255; });
  return o;
}

interface Binding { src: string; dst: string; sport: number; dport: number; proto: number; backend: string; bport: number; masq?: string; timeout: number; tcpState: number }

function emit(b: Binding, withDelete: boolean): Uint8Array {
  const h = new HeaderBench(), at = h.at;
  h.put(at, new Uint8Array(0));
  ["src", "dst", "backend", "masq"].forEach((k, i) => {
    const v = (b as unknown as Record<string, string | undefined>)[k];
    if (v) h.put(at + 4096 + i * 16, addr16(v));
  });
  const ad = (i: number) => at + 4096 + i * 16;
  const n = h.hooks.ctNewForTest(at, 1, ad(0), ad(1), b.sport, b.dport, b.proto, ad(2), b.bport, b.masq ? ad(3) : 0, b.timeout, CT_MARK, b.tcpState, withDelete ? 1 : 0);
  return h.bytes(at, n);
}

/** The top-level attributes of one message: type (without NLA_F_NESTED) to payload. */
function attrs(msg: Uint8Array, from = 20): Map<number, Uint8Array> {
  const v = new DataView(msg.buffer, msg.byteOffset), out = new Map<number, Uint8Array>();
  for (let p = from; p + 4 <= msg.length;) {
    const len = v.getUint16(p, true), type = v.getUint16(p + 2, true) & 0x3fff;
    out.set(type, msg.subarray(p + 4, p + len));
    p += (len + 3) & ~3;
  }
  return out;
}

describe("wire/ctnetlink", () => {
  const tcp: Binding = { src: "10.244.1.5", dst: "10.96.0.10", sport: 40000, dport: 80, proto: 6, backend: "10.244.2.5", bport: 8080, masq: "10.244.1.1", timeout: 120, tcpState: 1 };

  it("NEW for a masqueraded TCP flow: tshark reads ctnetlink NEW (CREATE|EXCL, no ACK asked: only a refusal is answered), the original tuple and its inverse, the timeout; then DELETE with the original tuple", () => {
    const bytes = emit(tcp, true);
    const d = dissect([netlinkRecord(bytes, NETLINK_NETFILTER)], LINKTYPE_NETLINK)[0]!;
    assert.deepEqual(d.all("netlink.hdr_type"), ["0x0100", "0x0102"], "NFNL_SUBSYS_CTNETLINK: IPCTNL_MSG_CT_NEW, then IPCTNL_MSG_CT_DELETE");
    assert.deepEqual([...new Set(d.all("netlink.hdr_flags"))], ["0x0601", "0x0001"], "NEW: REQUEST|EXCL|CREATE; DELETE: REQUEST");
    assert.deepEqual([...new Set(d.all("netlink.hdr_flags.ack"))], ["0"], "neither asks for an ack");
    assert.deepEqual(d.all("netlink.hdr_flags.create"), ["1"], "NEW creates");
    assert.deepEqual(d.all("netlink.hdr_flags.excl"), ["1"], "and never updates an entry that exists");
    assert.deepEqual(d.all("netlink.hdr_seq"), ["1", "2"], "one sequence number per request");
    assert.deepEqual(d.all("netlink-netfilter.family"), ["2", "2"], "AF_INET");
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.ip.ip_addr"),
      ["10.244.1.5", "10.96.0.10", "10.96.0.10", "10.244.1.5", "10.244.1.5", "10.96.0.10"], "orig, reply (inverted), the DELETE's orig");
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.proto.num"), ["6", "6", "6"]);
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.proto.src_port"), ["40000", "80", "40000"]);
    assert.deepEqual(d.all("netlink-netfilter.ct_attr.timeout"), ["120"]);
    assert.deepEqual(d.all("netlink-netfilter.ct.attr"), ["1", "2", "13", "6", "7", "8", "4", "1"],
      "CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_NAT_DST, CTA_NAT_SRC, CTA_TIMEOUT, CTA_MARK, CTA_PROTOINFO, then the DELETE's CTA_TUPLE_ORIG");
    assert.equal(d.expert().length, 0, `no malformed attribute: ${d.expert().join("; ")}`);
  });

  it("the NAT ranges: DNAT to the backend's address and port (min = max), SNAT to the masquerade address with no port range (the kernel keeps or picks one)", () => {
    const msg = emit(tcp, false);
    const a = attrs(msg);
    const natDst = attrs(a.get(13)!, 0), natSrc = attrs(a.get(6)!, 0);
    assert.deepEqual([...natDst.get(1)!], [10, 244, 2, 5], "CTA_NAT_V4_MINIP");
    assert.deepEqual([...natDst.get(2)!], [10, 244, 2, 5], "CTA_NAT_V4_MAXIP");
    const proto = attrs(natDst.get(3)!, 0);
    assert.deepEqual([...proto.get(1)!], [0x1f, 0x90], "CTA_PROTONAT_PORT_MIN 8080, network order");
    assert.deepEqual([...proto.get(2)!], [0x1f, 0x90], "CTA_PROTONAT_PORT_MAX 8080");
    assert.deepEqual([...natSrc.get(1)!], [10, 244, 1, 1], "SNAT min address");
    assert.equal(natSrc.has(3), false, "no CTA_NAT_PROTO in SNAT");
    assert.deepEqual([...a.get(8)!], [0x77, 0x61, 0x73, 0x70], "CTA_MARK, network order");
    const tcpInfo = attrs(attrs(a.get(4)!, 0).get(1)!, 0);
    assert.deepEqual([...tcpInfo.get(1)!], [1], "CTA_PROTOINFO_TCP_STATE SYN_SENT");
    assert.equal(new DataView(msg.buffer, msg.byteOffset).getUint32(0, true), msg.length, "nlmsg_len is the message's length");
    assert.equal(msg.length % 4, 0, "NLMSG_ALIGN");
  });

  it("IPv6 UDP without masquerade: AF_INET6, 16-byte tuple addresses, no CTA_NAT_SRC, no protoinfo", () => {
    const msg = emit({ src: "fd00:10:244:1::5", dst: "fd00:10:96::a", sport: 5353, dport: 53, proto: 17, backend: "fd00:10:244:2::9", bport: 5353, timeout: 30, tcpState: 0 }, false);
    const d = dissect([netlinkRecord(msg, NETLINK_NETFILTER)], LINKTYPE_NETLINK)[0]!;
    assert.deepEqual(d.all("netlink-netfilter.family"), ["10"], "AF_INET6");
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.ip.ip6_addr"), ["fd00:10:244:1::5", "fd00:10:96::a", "fd00:10:96::a", "fd00:10:244:1::5"]);
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.proto.num"), ["17", "17"]);
    const a = attrs(msg);
    assert.equal(a.has(6), false, "no CTA_NAT_SRC");
    assert.equal(a.has(4), false, "no CTA_PROTOINFO for UDP");
    assert.deepEqual([...attrs(a.get(13)!, 0).get(4)!], [...addr16("fd00:10:244:2::9")], "CTA_NAT_V6_MINIP");
  });
});
