// The host's own ctnetlink requests (src/netlink/conntrack.ts): the flush of a gone backend's UDP
// entries read back by tshark's netlink-netfilter dissector and by the layout of
// nfnetlink_conntrack.h; a dump's answer parsed from bytes laid out as the kernel writes them.
// That the kernel does what they ask is shown in daemon-semantics (offload mode).
import { strict as assert } from "node:assert";
import { dumpOffloaded, flushUdpBackend, parseFlows } from "../../../src/netlink/conntrack.js";
import { dissect } from "../../helpers/tshark.js";
import { LINKTYPE_NETLINK, NETLINK_NETFILTER, netlinkRecord } from "../../helpers/pcap.js";

/** Top-level attributes after the 20 bytes of nlmsghdr + nfgenmsg: type (flags masked) to payload. */
function attrs(b: Buffer, from = 20): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let p = from; p + 4 <= b.length; p += (b.readUInt16LE(p) + 3) & ~3) out.set(b.readUInt16LE(p + 2) & 0x3fff, b.subarray(p + 4, p + b.readUInt16LE(p)));
  return out;
}

/** One attribute: u16 len, u16 type, payload, padding. */
function attr(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4); h.writeUInt16LE(4 + payload.length, 0); h.writeUInt16LE(type, 2);
  return Buffer.concat([h, payload, Buffer.alloc(((payload.length + 3) & ~3) - payload.length)]);
}
const nest = (type: number, ...children: Buffer[]) => attr(type | 0x8000, Buffer.concat(children));
const be16 = (v: number) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
const be32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };

describe("netlink/conntrack", () => {
  it("flushUdpBackend: a ctnetlink DELETE (REQUEST|ACK) with the service's original tuple (VIP, UDP, port), the backend's reply tuple, the mark and a CTA_FILTER naming those fields", () => {
    const m = flushUdpBackend(7, { vip: "10.96.0.14", port: 7000, backend: "10.244.1.3", backendPort: 7001 });
    const d = dissect([netlinkRecord(m, NETLINK_NETFILTER)], LINKTYPE_NETLINK)[0]!;
    assert.deepEqual(d.all("netlink.hdr_type"), ["0x0102"], "NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE");
    assert.deepEqual(d.all("netlink.hdr_seq"), ["7"]);
    assert.deepEqual(d.all("netlink-netfilter.family"), ["2"], "AF_INET");
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.ip.ip_addr"), ["10.96.0.14", "10.244.1.3"], "orig destination, reply source");
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.proto.num"), ["17", "17"]);
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.proto.dst_port"), ["7000"], "the service port, in the original tuple");
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.proto.src_port"), ["7001"], "the backend port, in the reply tuple");
    const a = attrs(m);
    assert.deepEqual([...a.get(8)!], [0x77, 0x61, 0x73, 0x70], "CTA_MARK 'wasp'");
    assert.deepEqual([...a.get(21)!], [0xff, 0xff, 0xff, 0xff], "CTA_MARK_MASK all bits");
    const filter = attrs(a.get(25)!, 0);
    assert.equal(filter.get(1)!.readUInt32LE(0), (1 << 1) | (1 << 3) | (1 << 5), "orig: IP_DST | PROTO_NUM | PROTO_DST_PORT (host order)");
    assert.equal(filter.get(2)!.readUInt32LE(0), (1 << 0) | (1 << 3) | (1 << 4), "reply: IP_SRC | PROTO_NUM | PROTO_SRC_PORT");
    assert.equal(m.readUInt16LE(20 + 2) & 0x8000, 0x8000, "nests carry NLA_F_NESTED (the kernel's strict filter parser needs it)");
  });

  it("flushUdpBackend for a NodePort's any-address entry leaves the original address out of the tuple and the filter", () => {
    const m = flushUdpBackend(1, { port: 30053, backend: "fd00:10:244:1::3", backendPort: 53 });
    const d = dissect([netlinkRecord(m, NETLINK_NETFILTER)], LINKTYPE_NETLINK)[0]!;
    assert.deepEqual(d.all("netlink-netfilter.family"), ["10"], "AF_INET6, the backend's family");
    assert.deepEqual(d.all("netlink-netfilter.nfct_tuple.ip.ip6_addr"), ["fd00:10:244:1::3"]);
    assert.equal(attrs(attrs(m).get(25)!, 0).get(1)!.readUInt32LE(0), (1 << 3) | (1 << 5), "orig: PROTO_NUM | PROTO_DST_PORT only");
  });

  it("dumpOffloaded asks for a dump (NLM_F_DUMP) of the entries with the mark 'wasp', any family", () => {
    const m = dumpOffloaded(3);
    assert.equal(m.readUInt16LE(4), 0x0101, "IPCTNL_MSG_CT_GET");
    assert.equal(m.readUInt16LE(6) & 0x300, 0x300, "NLM_F_DUMP");
    assert.equal(m[16], 0, "AF_UNSPEC");
    assert.deepEqual([...attrs(m).get(8)!], [0x77, 0x61, 0x73, 0x70]);
  });

  it("parseFlows reads a dump's NEW messages: both tuples, the TCP state, timeout, status, mark and counters; other messages are passed over", () => {
    const tuple = (src: number[], dst: number[], sport: number, dport: number) => nest(1 /* placeholder type, set by caller */,
      nest(1, attr(1, Buffer.from(src)), attr(2, Buffer.from(dst))), nest(2, attr(1, Buffer.from([6])), attr(2, be16(sport)), attr(3, be16(dport))));
    const orig = tuple([10, 244, 1, 5], [10, 96, 0, 10], 40000, 80), reply = tuple([10, 244, 1, 9], [10, 244, 1, 5], 8080, 40000);
    orig.writeUInt16LE(1 | 0x8000, 2); reply.writeUInt16LE(2 | 0x8000, 2);
    const counters = (p: number, b: number) => { const c = (v: number) => { const x = Buffer.alloc(8); x.writeBigUInt64BE(BigInt(v)); return x; }; return Buffer.concat([attr(1, c(p)), attr(2, c(b))]); };
    const body = Buffer.concat([
      orig, reply, attr(3, be32(0x1ae)), attr(7, be32(431999)), attr(8, be32(0x77617370)),
      nest(4, nest(1, attr(1, Buffer.from([3])))), nest(9, counters(10, 1000)), nest(10, counters(8, 9000)),
    ]);
    const msg = (type: number, payload: Buffer) => {
      const h = Buffer.alloc(20); h.writeUInt32LE(20 + payload.length, 0); h.writeUInt16LE(type, 4); h[16] = 2;
      return Buffer.concat([h, payload]);
    };
    const done = Buffer.alloc(20); done.writeUInt32LE(20, 0); done.writeUInt16LE(3, 4);   // NLMSG_DONE
    const flows = parseFlows(Buffer.concat([msg(0x0100, body), done]));
    assert.deepEqual(flows, [{
      proto: 6, orig: { src: "10.244.1.5", dst: "10.96.0.10", sport: 40000, dport: 80 }, reply: { src: "10.244.1.9", dst: "10.244.1.5", sport: 8080, dport: 40000 },
      state: "ESTABLISHED", timeoutSec: 431999, status: 0x1ae, mark: 0x77617370, packets: 18, bytes: 10000,
    }]);
  });
});
